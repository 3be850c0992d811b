"""The `restore-assets` command line: `main` builds the parser from one module per command group
(fleet and demo, restore, compare, server restore, aws, recover, reports, drill); `common` holds
the helpers they share (options, backend configuration, output, exit codes)."""
