package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-inlets/caddy-inlets/internal/testenv"
)

// sshServer is a real OpenSSH server on a loopback port that lets the
// test's key log in as the user running the tests.
type sshServer struct {
	Port int
	key  string
	user string
}

// startSSHD runs Debian's sshd with a generated host key and an
// authorized key in a temporary directory. It skips the test when OpenSSH
// is not installed.
func startSSHD(t *testing.T) *sshServer {
	t.Helper()
	const sshd = "/usr/sbin/sshd"
	if _, err := os.Stat(sshd); err != nil {
		t.Skipf("OpenSSH server not installed (%v): apt-get install openssh-server openssh-client (CI does, see .ci/run)", err)
	}
	for _, tool := range []string{"ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: apt-get install openssh-client (CI does, see .ci/run)", tool)
		}
	}
	// sshd refuses to start without its privilege separation directory,
	// which Debian's service unit creates at boot.
	if _, err := os.Stat("/run/sshd"); err != nil {
		if os.Geteuid() != 0 {
			t.Skip("sshd needs /run/sshd, which only root can create")
		}
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatal(err)
		}
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	hostKey, userKey := filepath.Join(dir, "host_key"), filepath.Join(dir, "user_key")
	for _, key := range []string{hostKey, userKey} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	pub, err := os.ReadFile(userKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	authorized := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authorized, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	config := filepath.Join(dir, "sshd_config")
	err = os.WriteFile(config, fmt.Appendf(nil, `Port %d
ListenAddress 127.0.0.1
HostKey %s
AuthorizedKeysFile %s
PidFile none
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
`, port, hostKey, authorized), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	// sshd -t checks the config as sshd would start with it: a machine
	// without sshd's privilege separation user (a container with the
	// binary but not the package's users) cannot run it at all.
	if out, err := exec.Command(sshd, "-t", "-f", config).CombinedOutput(); err != nil {
		if strings.Contains(string(out), "Privilege separation user") {
			t.Skipf("sshd cannot run here: %s(apt-get install --reinstall openssh-server creates its user)", out)
		}
		t.Fatalf("sshd -t -f %s: %v\n%s", config, err, out)
	}
	p := testenv.Start(t, sshd, "-D", "-e", "-f", config)
	p.WaitOutput(t, 10*time.Second, "Server listening on 127.0.0.1 port "+strconv.Itoa(port))
	return &sshServer{Port: port, key: userKey, user: me.Username}
}

// command returns an ssh client command that logs in on port (a tunnel
// port) and runs remote, ignoring the user's own ssh configuration.
func (s *sshServer) command(ctx context.Context, port int, remote ...string) *exec.Cmd {
	args := []string{"-F", "/dev/null", "-p", strconv.Itoa(port), "-i", s.key,
		"-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
		s.user + "@127.0.0.1"}
	return exec.CommandContext(ctx, "ssh", append(args, remote...)...)
}

// run logs in through port, runs remote and returns its output.
func (s *sshServer) run(t *testing.T, port int, remote ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := s.command(ctx, port, remote...).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh -p %d %v: %v\n%s", port, remote, err, out)
	}
	return string(out)
}
