from myapp.cli import main

main()
