"""Entry point of an esg-python3 function: the runtime serves function/handler.py."""

import sys

from esg_runtime.server import main

if __name__ == "__main__":
    sys.exit(main("function.handler"))
