package httpapi

// RoutePatterns returns every "METHOD /path" pattern routes.go declares,
// for the test that keeps the OpenAPI document in step with the mux.
func RoutePatterns() []string {
	s := &server{docs: &documents{}}
	var out []string
	for _, rt := range routes(s) {
		out = append(out, rt.method+" "+rt.path)
	}
	return out
}
