import sys

from fabric_ray.demo.etl import main

sys.exit(main())
