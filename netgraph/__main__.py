from netgraph.cli import main

raise SystemExit(main())
