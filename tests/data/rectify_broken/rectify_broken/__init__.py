"""A rectify plugin that cannot be imported (test fixture): its dependency is missing."""

raise ImportError("rectify_broken needs kiln_firmware_sdk, which is not installed")
