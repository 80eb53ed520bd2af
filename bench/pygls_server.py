"""A minimal pygls server for the transport comparison in bench/suite.py: it answers
`initialize` (pygls's own handler) and a custom `datasources/list` request with the small
JSON the agent returns on an empty store, over stdio with LSP framing."""
from pygls.lsp.server import LanguageServer

server = LanguageServer("bench-pygls", "1.0")

EMPTY_LIST = {"dataSources": [], "pagination": {"page": 1, "limit": 20, "total": 0, "totalPages": 0}}


@server.feature("datasources/list")
def datasources_list(ls, params):
    return EMPTY_LIST


if __name__ == "__main__":
    server.start_io()
