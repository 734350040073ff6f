from modelforge.cli.app import main

main()
