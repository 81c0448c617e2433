// Command sink is an OTLP/HTTP receiver that accepts and discards what it is sent, so that
// bench/tracing/run.sh measures the echo server's own cost of exporting spans (encoding,
// batching, the POST) and not a backend's.
package main

import (
	"flag"
	"io"
	"log"
	"net/http"
	"strconv"
	"sync/atomic"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:4318", "address to listen on")
	flag.Parse()
	var posts, bytes atomic.Int64
	h := func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		posts.Add(1)
		bytes.Add(n)
		// An empty body is an empty ExportTraceServiceResponse: everything accepted.
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}
	http.HandleFunc("POST /v1/traces", h)
	http.HandleFunc("POST /v1/metrics", h)
	http.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"posts":`+strconv.FormatInt(posts.Load(), 10)+`,"bytes":`+strconv.FormatInt(bytes.Load(), 10)+"}\n")
	})
	log.Fatal(http.ListenAndServe(*addr, nil))
}
