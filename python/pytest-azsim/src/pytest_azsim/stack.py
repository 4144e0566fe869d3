"""Starting and stopping one `azsim up`, and what a test needs to reach it."""
import json
import os
import shlex
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

# The well-known development identity (public values, as Azurite's account key is).
TENANT_ID = "a2e0c0de-5e11-4a55-9a2e-000000000001"
SUBSCRIPTION_ID = "a2e0c0de-5e11-4a55-9a2e-000000000002"
ADMIN_CLIENT_ID = "a2e0c0de-5e11-4a55-9a2e-00000000000a"
ADMIN_CLIENT_SECRET = "azsim~DevAdminSecret.0000000000000000000000"
ADMIN_OBJECT_ID = "a2e0c0de-5e11-4a55-9a2e-00000000001a"
HOST_IDENTITY_CLIENT_ID = "a2e0c0de-5e11-4a55-9a2e-00000000000b"
IDENTITY_HEADER = "azsim-identity-header"
# The well-known interactive user (the portal's sign-in).
ADMIN_USER = "admin@azsim.onmicrosoft.com"
ADMIN_USER_PASSWORD = "azsim~DevAdminPassword.000000000000000000"

_PORT_FLAGS = ["--entra-port", "--mi-port", "--keyvault-port", "--keyvault-mgmt-port", "--vault-server-port"]
_real_getaddrinfo = socket.getaddrinfo


def _loopback_for_localhost(host, *args, **kwargs):
    # glibc does not resolve `*.localhost`; RFC 6761 says it is loopback.
    if isinstance(host, str) and host.endswith(".localhost"):
        host = "127.0.0.1"
    return _real_getaddrinfo(host, *args, **kwargs)


def azsim_binary(explicit=None):
    """`explicit`, else $AZSIM_BIN, else the checkout's target/{debug,release}/azsim, else PATH."""
    explicit = explicit or os.environ.get("AZSIM_BIN")
    if explicit:
        return explicit
    here = os.path.dirname(os.path.abspath(__file__))
    for root in (os.getcwd(), here):
        while True:
            target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(root, "target")
            for profile in ("debug", "release"):
                candidate = os.path.join(target, profile, "azsim")
                if os.path.exists(candidate):
                    return candidate
            parent = os.path.dirname(root)
            if parent == root:
                break
            root = parent
    found = shutil.which("azsim")
    if found:
        return found
    raise RuntimeError("azsim binary not found: run `cargo build -p azsim` or set AZSIM_BIN")


class AzsimStack:
    """One running `azsim up`: its URLs, CA, settings and ready-made clients."""

    tenant_id = TENANT_ID
    subscription_id = SUBSCRIPTION_ID
    client_id = ADMIN_CLIENT_ID
    client_secret = ADMIN_CLIENT_SECRET

    def __init__(self, process, binary, data_dir, published):
        self.process = process
        self.binary = binary
        self.data_dir = str(data_dir)
        ports = published["ports"]
        self.entra_url = f"https://localhost:{ports['entra']}"
        self.mi_url = f"http://localhost:{ports['managedIdentity']}"
        self.keyvault_port = ports["keyvault"]
        self.keyvault_url = f"https://localhost:{ports['keyvault']}"
        self.keyvault_mgmt_url = f"https://localhost:{ports['keyvaultManagement']}"
        self.arm_url = f"https://localhost:{ports['vaultServer']}"
        self.ca_path = published["caFile"]
        self.env = self._env()

    def run(self, *args, check=True):
        """Runs `azsim ARGS --data-dir <this stack>` (it finds the ports in azsim.json)."""
        result = subprocess.run([self.binary, *args, "--data-dir", self.data_dir],
                                capture_output=True, text=True, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"azsim {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def _env(self):
        values = {}
        for line in self.run("env").stdout.splitlines():
            if line.startswith("export "):
                name, _, value = line[len("export "):].partition("=")
                values[name] = shlex.split(value)[0] if value else ""
        return values

    def vault_url(self, vault):
        """A Key Vault's data-plane URL (the form whose challenge the SDKs verify)."""
        return f"https://{vault}.vault.localhost:{self.keyvault_port}"

    def _open(self, request):
        context = ssl.create_default_context(cafile=self.ca_path)
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            body = response.read()
            return json.loads(body) if body else None

    def token(self, scope):
        """An access token of the well-known admin app."""
        form = urllib.parse.urlencode({
            "grant_type": "client_credentials", "client_id": ADMIN_CLIENT_ID,
            "client_secret": ADMIN_CLIENT_SECRET, "scope": scope,
        }).encode()
        request = urllib.request.Request(f"{self.entra_url}/{TENANT_ID}/oauth2/v2.0/token", data=form)
        return self._open(request)["access_token"]

    def admin_token(self):
        return self.token("api://azsim/.default")

    def admin(self, method, path, body=None, base=None):
        """A call to an admin API (entra-sim's unless `base` names another service)."""
        request = urllib.request.Request(
            f"{base or self.entra_url}{path}", method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.admin_token()}", "Content-Type": "application/json"},
        )
        try:
            return self._open(request)
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{method} {path}: {error.code} {error.read().decode()}") from None

    # Clients of the official SDKs (installed with the `sdk` extra).
    def credential(self):
        from azure.identity import ClientSecretCredential
        return ClientSecretCredential(TENANT_ID, ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET,
                                      authority=self.entra_url, disable_instance_discovery=True)

    def recovery_services_client(self):
        from azure.mgmt.recoveryservices import RecoveryServicesClient
        return RecoveryServicesClient(self.credential(), SUBSCRIPTION_ID, base_url=self.arm_url)

    def backup_client(self):
        from azure.mgmt.recoveryservicesbackup.activestamp import RecoveryServicesBackupClient
        return RecoveryServicesBackupClient(self.credential(), SUBSCRIPTION_ID, base_url=self.arm_url)

    def secret_client(self, vault="azsim"):
        from azure.keyvault.secrets import SecretClient
        return SecretClient(self.vault_url(vault), self.credential())

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(data_dir, binary=None, seed=None, timeout=60):
    """Starts `azsim up` on free ports in `data_dir`; returns when every service is healthy."""
    binary = azsim_binary(binary)
    data_dir = str(data_dir)
    args = [binary, "up", "--data-dir", data_dir]
    for flag in _PORT_FLAGS:
        args += [flag, "0"]
    if seed:
        args += ["--seed", str(seed)]
    log_path = os.path.join(data_dir, "azsim-up.log")
    os.makedirs(data_dir, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)
    settings = os.path.join(data_dir, "azsim.json")
    deadline = time.time() + timeout
    while not os.path.exists(settings):
        if process.poll() is not None or time.time() > deadline:
            if process.poll() is None:
                process.kill()
            with open(log_path, errors="replace") as log:
                tail = log.read()[-4000:]
            raise RuntimeError(f"azsim up did not start (exit {process.poll()}):\n{tail}")
        time.sleep(0.05)
    with open(settings) as f:
        published = json.load(f)
    socket.getaddrinfo = _loopback_for_localhost
    stack = AzsimStack(process, binary, data_dir, published)
    for url in (stack.entra_url, stack.keyvault_url, stack.arm_url):
        stack._open(urllib.request.Request(f"{url}/health"))
    return stack
