package server

import (
	_ "embed"
	"net/http"
)

// openAPI describes every route; a test keeps it and the route table equal.
//
//go:embed openapi.json
var openAPI []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}
