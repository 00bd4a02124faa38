"""Who may do what: the admin password and the app's login, checked so that guessing is slow.

This module owns checking a secret: in constant time, and each wrong guess held for a second, one
wrong guess at a time for the whole app, so a script cannot try more than about one password a
second however many requests it sends at once (a right one never waits). Each wrong guess is one
line in the log. It knows nothing about Gradio.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time

WRONG_GUESS_S = 1.0
log = logging.getLogger("showcase.access")


class SecretGuard:
    """One secret (or a user and password), and the pace at which wrong guesses are answered."""

    def __init__(self, secret: str, what: str, wait_s: float = WRONG_GUESS_S) -> None:
        self.secret, self.what, self.wait_s = secret, what, wait_s
        self._lock = threading.Lock()
        self.wrong = 0

    def check(self, given: object) -> bool:
        if isinstance(given, str) and secrets.compare_digest(given.encode("utf-8", "replace"),
                                                            self.secret.encode("utf-8", "replace")):
            return True
        with self._lock:  # one wrong guess at a time, each held for `wait_s`
            self.wrong += 1
            log.warning("wrong %s (%d so far)", self.what, self.wrong)
            time.sleep(self.wait_s)
        return False


def login_check(user_pass: tuple[str, str], wait_s: float = WRONG_GUESS_S):
    """A Gradio `auth` callable for one user and password, with wrong guesses slowed."""
    guard = SecretGuard(f"{user_pass[0]}\0{user_pass[1]}", "login", wait_s)

    def check(username: str, password: str) -> bool:
        return guard.check(f"{username}\0{password}")

    return check
