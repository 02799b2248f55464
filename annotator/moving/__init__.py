"""Moving an installation (its database rows and media files) to another database and storage.

``move.installation_move`` is the one entry point (``manage.py move_installation``); the modules below it
each do one part: ``target`` connects to and migrates the target database, ``tables`` says which tables
travel and copies their rows, ``digests`` counts and checksums rows on either side, ``media`` copies and
verifies the files.
"""
