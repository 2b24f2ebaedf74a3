package cli

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestListenGRPCUnixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "llmp") // short: socket paths are limited to 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	var lc net.ListenConfig
	path := filepath.Join(dir, "extproc.sock")

	// A socket left by a sidecar that died: nobody answers, it is replaced.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	l, err := listenGRPC(ctx, &lc, "unix:"+path)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	// One in use is not taken over.
	if _, err := listenGRPC(ctx, &lc, "unix:"+path); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("over a live socket: %v", err)
	}
	l.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("socket left after close: %v", err)
	}
	// Nor is a file that is not a socket.
	if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := listenGRPC(ctx, &lc, "unix:"+path); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("over a file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "data" {
		t.Fatal("the file was touched")
	}
}
