"""Connectors: SFTP and local exchange directories (`sftp`), the embedded test/demo SFTP server
(`sftp_server`) and the core-ledger database (`ledger`). Errors are in `errors`."""
