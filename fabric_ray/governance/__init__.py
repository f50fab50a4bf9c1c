"""Schema governance: validating schemas and checking that they evolve compatibly.

Plain Python, no Ray and no I/O. Import the submodule you need, e.g.
``from fabric_ray.governance.avro import parse_avro, check_compatibility, check_mode``.
"""
