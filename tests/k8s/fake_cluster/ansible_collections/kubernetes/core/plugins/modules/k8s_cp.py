#!/usr/bin/python
"""Fake kubernetes.core.k8s_cp (tests/k8s/test_fake_cluster.py)."""

from ansible_collections.kubernetes.core.plugins.module_utils.fake import run

if __name__ == "__main__":
    run("k8s_cp")
