// Command fake-openai runs the fakeopenai fake OpenAI API upstream.
//
//	fake-openai [-addr 127.0.0.1:8443] [-tls=true] [-cert-out ca.pem]
//
// With -tls (the default) it serves HTTPS with a freshly generated
// self-signed certificate for api.openai.com, localhost and 127.0.0.1;
// -cert-out writes that certificate's PEM (usable as a CA) to a file, before
// the listening line is printed. It prints one line to stdout once it
// accepts connections:
//
//	fake-openai listening on https://127.0.0.1:8443
//
// and runs until SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/llm-proxy/llm-proxy/tests/fakeopenai"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8443", "listen address")
	useTLS := flag.Bool("tls", true, "serve HTTPS with a generated self-signed certificate")
	certOut := flag.String("cert-out", "", "write the certificate PEM (a CA for clients to trust) to this file")
	flag.Parse()

	if err := run(*addr, *useTLS, *certOut); err != nil {
		fmt.Fprintln(os.Stderr, "fake-openai:", err)
		os.Exit(1)
	}
}

func run(addr string, useTLS bool, certOut string) error {
	if certOut != "" && !useTLS {
		return fmt.Errorf("-cert-out needs -tls")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	s := fakeopenai.New()
	// Nothing can read the recordings of a separate process, and they would
	// only grow its memory over a benchmark.
	s.SetRecording(false)
	var (
		r   *fakeopenai.Running
		err error
	)
	if useTLS {
		r, err = s.StartTLS(addr)
	} else {
		r, err = s.Start(addr)
	}
	if err != nil {
		return err
	}
	defer r.Close()
	if certOut != "" {
		if err := r.WriteCertPEM(certOut); err != nil {
			return err
		}
	}
	fmt.Printf("fake-openai listening on %s\n", r.URL())

	select {
	case <-ctx.Done():
	case <-r.Done():
	}
	return r.Close()
}
