"""A real-Postfix lab for end-to-end tests: a private Postfix on loopback plus a fake remote MX.

``fake_mx.FakeMX`` answers by recipient local part; ``postfix_lab.PostfixLab`` runs Debian's
Postfix with its own config, queue, log file and Maildir under a temp directory. Tests import
them as ``from tests.lab.postfix_lab import PostfixLab``.
"""
