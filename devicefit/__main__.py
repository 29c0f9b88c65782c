from devicefit.cli import main

raise SystemExit(main())
