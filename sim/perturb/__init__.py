"""Stage 2, perturb: the everyday edits applied to corpus images, and the black-box evasion search.

Edits: JPEG, resize, blur, crop, ….
"""
