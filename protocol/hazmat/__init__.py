"""Dangerous primitives, wrapped once: ristretto255 (libsodium via rbcl), AEAD,
Shamir sharing and TenSEAL contexts. Protocol modules build on these wrappers and
never call rbcl, ``cryptography`` or TenSEAL directly.

Nothing here is a home-made primitive: group arithmetic is libsodium's, hashing
and AEAD are ``cryptography``'s. These wrappers add input validation (canonical,
non-identity points; exact lengths) and RFC 9380 ``expand_message_xmd``.
"""
