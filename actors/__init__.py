"""Ray actors: thin shells around the plain objects of ``fabric_ray``.

Each module wraps one object with ``@ray.remote``, start-up, shutdown and handles, nothing more.
"""
