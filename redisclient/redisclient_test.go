package redisclient

import (
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestNewHonoursDeadlines(t *testing.T) {
	c, err := New("redis://127.0.0.1:1/0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if on, known := ContextTimeoutEnabled(c); !on || !known {
		t.Errorf("New's client: enabled %v, known %v", on, known)
	}
	plain := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer plain.Close()
	if on, known := ContextTimeoutEnabled(plain); on || !known {
		t.Errorf("a default client: enabled %v, known %v", on, known)
	}
	if _, err := New("http://x"); err == nil {
		t.Error("a non-redis URL was accepted")
	}
}
