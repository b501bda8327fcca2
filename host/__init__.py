"""tinymirnet.host: the serial client, the virtual board and the `tinymirnet` command line."""
