"""Stage 2, perturb: the everyday edits (JPEG, resize, blur, crop, …) applied to corpus images, and the black-box evasion search."""
