"""vmbench: a deterministic simulation of a Linux 2.4 i386 machine for comparing memory
allocation and OOM-killer policies.  ``python -m harness`` is the command line."""
