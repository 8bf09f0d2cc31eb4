from idnode.cli import main

main()
