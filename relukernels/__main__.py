from relukernels.cli import main

raise SystemExit(main())
