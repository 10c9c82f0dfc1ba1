"""Dangerous primitives, wrapped once: ristretto255 (libsodium via rbcl), AEAD,
Shamir sharing, TenSEAL contexts, an AES-CTR PRG, X25519 key agreement and channel
frames. Protocol modules build on these wrappers and never call rbcl, TenSEAL,
``cryptography``'s ciphers or X25519 directly (tests/test_layers.py checks it).

Nothing here is a home-made primitive: group arithmetic is libsodium's, hashing
and AEAD are ``cryptography``'s. These wrappers add input validation (canonical,
non-identity points; exact lengths) and RFC 9380 ``expand_message_xmd``.
"""
