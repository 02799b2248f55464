"""manage.py demo_users: create the demo accounts and print their credentials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from annotator.demo import demo_users_ensure


class Command(BaseCommand):
    help = "Create the demo admin and expert accounts (random passwords kept in var/demo_credentials) and print them."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--quiet", action="store_true", help="print only the credentials box")

    def handle(self, *args: Any, **options: Any) -> None:
        accounts = demo_users_ensure(credentials_file=Path(settings.VAR_DIR) / "demo_credentials")
        lines = [f"  {role:<7} user: {username:<8} password: {password}" for role, username, password in accounts]
        width = max(len(line) for line in lines) + 2
        self.stdout.write("+" + "-" * width + "+")
        self.stdout.write("| " + "DeepMiner Studio demo accounts".ljust(width - 1) + "|")
        for line in lines:
            self.stdout.write("|" + line.ljust(width) + "|")
        self.stdout.write("+" + "-" * width + "+")
