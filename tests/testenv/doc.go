// Package testenv finds the real PostgreSQL and Redis servers that
// integration tests run against.
//
// For each service it tries, in order:
//
//  1. the URL in an environment variable (LLM_PROXY_TEST_POSTGRES_URL,
//     LLM_PROXY_TEST_REDIS_URL), used as is;
//  2. a container started with testcontainers-go, but only if a Docker
//     engine answers on its socket right now (checked in well under a second,
//     so a machine with a docker CLI and no engine falls through at once);
//  3. the local server binaries (postgres and initdb from PATH or from
//     /usr/lib/postgresql/<highest version>/bin, redis-server from PATH),
//     started on a free loopback port with their files in a temporary
//     directory. As root, PostgreSQL runs as the "postgres" user, since it
//     refuses to run as root.
//
// A service is started at most once per test binary, on first use, and is
// shared by the tests in it: [NewPostgresDB] gives each test its own
// database; Redis users should keep to their own keys. Call [Main] from
// TestMain so that what was started is stopped when the tests end; if the
// binary dies instead, local servers still die with it (Linux parent-death
// signal) and containers are reaped by testcontainers.
//
// When none of the three is available the test is skipped, unless the
// environment variable CI is true: then it fails, because in CI a skipped
// integration test is a hidden gap. A service that is found but does not
// start is always a failure, reported with the tail of its log.
package testenv
