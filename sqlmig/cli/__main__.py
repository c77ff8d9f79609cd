"""`python -m sqlmig.cli`, what the tests run; the console script is sqlmig_main.main."""

from sqlmig.cli.main import main

main()
