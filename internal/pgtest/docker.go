package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/ory/dockertest/v3"
	dc "github.com/ory/dockertest/v3/docker"
)

const (
	dockerRepo = "postgres"
	dockerTag  = "15"

	labelPgtest = "lockstep.pgtest"
	labelPID    = "lockstep.pgtest.pid"
	labelHost   = "lockstep.pgtest.host"
)

// dockerProvider starts postgres:15 containers.
type dockerProvider struct {
	pool *dockertest.Pool
	// host is where published ports are reached. On a local engine each
	// container's port is fixed when it is created, so that Stop/Start keeps
	// it; on a remote engine Docker chooses, and Start may change Server.Port.
	host      string
	fixedPort bool
}

func newDockerProvider() (*dockerProvider, error) {
	pool, err := dockertest.NewPool("")
	if err != nil {
		return nil, err
	}
	if err := pool.Client.Ping(); err != nil {
		return nil, err
	}
	pool.MaxWait = 2 * time.Minute
	p := &dockerProvider{pool: pool, host: "127.0.0.1", fixedPort: true}
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		if u, err := url.Parse(h); err == nil && u.Scheme != "unix" && u.Scheme != "npipe" && u.Hostname() != "" {
			if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
				if u.Hostname() != "localhost" {
					p.host, p.fixedPort = u.Hostname(), false
				}
			}
		}
	}
	p.sweep()
	return p, nil
}

func (p *dockerProvider) describe() string {
	return fmt.Sprintf("docker %s:%s on %s", dockerRepo, dockerTag, p.host)
}

type dockerServer struct {
	p   *dockerProvider
	res *dockertest.Resource
	srv *Server
}

func (p *dockerProvider) newServer(name string) (*Server, error) {
	hostname, _ := os.Hostname()
	binding := dc.PortBinding{}
	if p.fixedPort {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		binding = dc.PortBinding{HostIP: "127.0.0.1", HostPort: strconv.Itoa(port)}
	}
	cmd := []string{"postgres"}
	for _, s := range speedSettings {
		cmd = append(cmd, "-c", s.name+"="+s.value)
	}
	res, err := p.pool.RunWithOptions(&dockertest.RunOptions{
		Repository: dockerRepo,
		Tag:        dockerTag,
		Env: []string{
			"POSTGRES_USER=postgres",
			"POSTGRES_PASSWORD=" + TestPassword,
			"POSTGRES_HOST_AUTH_METHOD=scram-sha-256",
			"POSTGRES_INITDB_ARGS=--auth-host=scram-sha-256 --encoding=UTF8 --locale=C",
		},
		Cmd: cmd,
		Labels: map[string]string{
			labelPgtest: "1",
			labelPID:    strconv.Itoa(os.Getpid()),
			labelHost:   hostname,
		},
		PortBindings: map[dc.Port][]dc.PortBinding{"5432/tcp": {binding}},
	}, func(hc *dc.HostConfig) {
		hc.AutoRemove = false // Stop must not delete the container
		hc.RestartPolicy = dc.RestartPolicy{Name: "no"}
	})
	if err != nil {
		return nil, fmt.Errorf("%s server: docker run %s:%s: %w", name, dockerRepo, dockerTag, err)
	}
	s := &Server{
		Host:     p.host,
		User:     "postgres",
		password: TestPassword,
		adminDB:  "postgres",
		query:    url.Values{"sslmode": {"disable"}},
		name:     name,
	}
	ds := &dockerServer{p: p, res: res, srv: s}
	s.ctl = ds
	register(s)
	if err := ds.waitReady(); err != nil {
		_ = s.remove()
		return nil, fmt.Errorf("%s server: %w", name, err)
	}
	return s, nil
}

// waitReady reads the published port and waits until the server accepts the
// admin connection over TCP. The image's entrypoint runs a temporary server
// without TCP during initialisation, so a TCP connection means the real one.
func (ds *dockerServer) waitReady() error {
	c, err := ds.p.pool.Client.InspectContainer(ds.res.Container.ID)
	if err != nil {
		return err
	}
	ds.res.Container = c
	_, portStr, err := net.SplitHostPort(ds.res.GetHostPort("5432/tcp"))
	if err != nil {
		return fmt.Errorf("container publishes no port for 5432/tcp: %w", err)
	}
	if ds.srv.Port, err = strconv.Atoi(portStr); err != nil {
		return fmt.Errorf("container port %q: %w", portStr, err)
	}
	err = ds.p.pool.Retry(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := connect(ctx, ds.srv.DSN("postgres"))
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		return conn.Ping(ctx)
	})
	if err != nil {
		return fmt.Errorf("container %.12s not ready: %w", ds.res.Container.ID, err)
	}
	return nil
}

func (ds *dockerServer) stop() error {
	// The image's stop signal is SIGINT: a fast shutdown.
	return ds.p.pool.Client.StopContainer(ds.res.Container.ID, 60)
}

func (ds *dockerServer) start() error {
	if err := ds.p.pool.Client.StartContainer(ds.res.Container.ID, nil); err != nil {
		return err
	}
	return ds.waitReady()
}

func (ds *dockerServer) remove() error {
	return ds.p.pool.Purge(ds.res)
}

func (ds *dockerServer) abort() {
	_ = ds.p.pool.Client.KillContainer(dc.KillContainerOptions{ID: ds.res.Container.ID, Signal: dc.SIGKILL})
}

// sweep removes containers left by test processes on this host that were
// killed before Main could clean up.
func (p *dockerProvider) sweep() {
	hostname, _ := os.Hostname()
	list, err := p.pool.Client.ListContainers(dc.ListContainersOptions{
		All:     true,
		Filters: map[string][]string{"label": {labelPgtest + "=1", labelHost + "=" + hostname}},
	})
	if err != nil {
		return
	}
	for _, c := range list {
		pid, _ := strconv.Atoi(c.Labels[labelPID])
		if processAlive(pid) {
			continue
		}
		err := p.pool.Client.RemoveContainer(dc.RemoveContainerOptions{ID: c.ID, Force: true, RemoveVolumes: true})
		var noSuch *dc.NoSuchContainer
		if err == nil || errors.As(err, &noSuch) {
			fmt.Fprintf(os.Stderr, "pgtest: removed container %.12s left by an earlier test run\n", c.ID)
		}
	}
}
