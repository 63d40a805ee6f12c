"""Python halves of the JavaScript client's integration and browser tests (client-js/test)."""
