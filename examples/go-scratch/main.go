// hello prints a greeting and proves the CA bundle copied into the scratch
// image is there and readable, which an HTTPS client would need.
package main

import (
	"crypto/x509"
	"fmt"
	"os"
	"runtime"
)

const bundle = "/etc/ssl/certs/ca-certificates.crt"

func main() {
	fmt.Printf("hello from a static Go binary (%s)\n", runtime.Version())
	pem, err := os.ReadFile(bundle)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot read %s: %v\n", bundle, err)
		os.Exit(1)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		fmt.Fprintf(os.Stderr, "%s holds no certificates\n", bundle)
		os.Exit(1)
	}
	fmt.Println("CA bundle loaded: HTTPS would work")
}
