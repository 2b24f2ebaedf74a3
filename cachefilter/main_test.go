package cachefilter_test

import (
	"testing"

	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
