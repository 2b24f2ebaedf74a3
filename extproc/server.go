package extproc

import (
	"context"
	"errors"
	"io"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/rs/zerolog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/llm-proxy/llm-proxy/authz"
	"github.com/llm-proxy/llm-proxy/config"
)

// authenticator turns a bearer token into the project's identity and key.
type authenticator interface {
	Authenticate(ctx context.Context, token string) (authz.Principal, error)
}

var _ authenticator = (*authz.Authorizer)(nil)

// Options configures a [Server].
type Options struct {
	Auth    authenticator
	Routes  []config.Route
	Logger  zerolog.Logger
	Metrics *Metrics // nil: metrics are not recorded
	Now     func() time.Time
}

// Server implements envoy.service.ext_proc.v3.ExternalProcessor.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer

	auth    authenticator
	routes  allowlist
	log     zerolog.Logger
	metrics *Metrics
	now     func() time.Time
}

// NewServer returns a Server. Routes must be valid (see config.ParseRoutes).
func NewServer(o Options) *Server {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Server{
		auth:    o.Auth,
		routes:  newAllowlist(o.Routes),
		log:     o.Logger,
		metrics: o.Metrics,
		now:     o.Now,
	}
}

// Process serves one HTTP request's worth of phases.
func (s *Server) Process(ps extprocv3.ExternalProcessor_ProcessServer) error {
	st := s.newStream(ps.Context())
	defer st.finish()
	for {
		req, err := ps.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
				return nil // Envoy is done with this request, or the client left
			}
			return status.Errorf(codes.Unknown, "receive: %v", err)
		}
		resp := st.handle(req)
		if err := ps.Send(resp); err != nil {
			return err
		}
	}
}
