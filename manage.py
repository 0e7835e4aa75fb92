#!/usr/bin/env python
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "skincare.settings.dev")
    from django.core.management import execute_from_command_line

    from skincare.environment import prepare_process

    prepare_process()  # the embedded mode's folders, KERAS_HOME: before any command runs
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
