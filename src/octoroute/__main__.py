"""`python -m octoroute` is the `octoroute` command."""

from octoroute.cli.main import main

raise SystemExit(main())
