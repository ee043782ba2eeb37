"""``python -m cdp_ray.cli``: the console script."""

from cdp_ray.cli import main

main()
