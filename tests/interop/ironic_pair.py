"""The real Ironic 39 and rivet-conductor side by side on loopback, for the scripts that compare
their answers (api-semantics, api-conformance).

Both run standalone with noauth and SQLite in a work directory, with the same hardware type
(fake-hardware) and interfaces enabled, and are stopped by `Pair.stop`.
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    """One API server: calls answer (status, parsed JSON body or text, headers)."""

    def __init__(self, name, base):
        self.name, self.base = name, base

    def request(self, method, path, body=None, version="latest"):
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        headers = {"Content-Type": "application/json"}
        if version is not None:
            headers["X-OpenStack-Ironic-API-Version"] = version
        req = urllib.request.Request(self.base + path, method=method, data=data, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                text = r.read()
                return r.status, (json.loads(text) if text else None), dict(r.headers)
        except urllib.error.HTTPError as e:
            text = e.read()
            try:
                return e.code, json.loads(text), dict(e.headers)
            except ValueError:
                return e.code, text.decode(errors="replace"), dict(e.headers)

    def call(self, method, path, body=None, version="latest"):
        status, doc, _ = self.request(method, path, body, version)
        return status, doc

    def wait_state(self, uuid, want):
        state = None
        for _ in range(150):
            state = self.call("GET", f"/v1/nodes/{uuid}")[1]["provision_state"]
            if state == want:
                return
            time.sleep(0.2)
        raise SystemExit(f"FAIL: {self.name}: node {uuid} never reached {want} (is {state})")


def _start(cmd, log, base):
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(150):
        if proc.poll() is not None:
            raise SystemExit(f"FAIL: {cmd[0]} exited at start; see {log.name}")
        try:
            urllib.request.urlopen(base + "/", timeout=2).read()
            return proc
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"FAIL: {cmd[0]} did not answer on {base}")


class Pair:
    """Ironic and Rivet, started; `ironic` and `rivet` are their `Api`s."""

    def __init__(self, venv, conductor, prefix, api_class=Api, inspect=("no-inspect",), ironic_extra="",
                 rivet_extra="", hardware_types=("fake-hardware",), interfaces=None):
        # Enabled implementations per kind, the same on both sides; `interfaces` adds to or
        # replaces the defaults below (for example {"power": ["fake", "redfish"]}).
        enabled = {"bios": ["no-bios"], "boot": ["fake"], "console": ["no-console"], "deploy": ["fake", "direct"],
                   "firmware": ["no-firmware"], "inspect": list(inspect), "management": ["fake"],
                   "network": ["noop"], "power": ["fake"], "raid": ["agent", "no-raid"], "rescue": ["no-rescue"],
                   "storage": ["noop"], "vendor": ["no-vendor"]}
        enabled.update(interfaces or {})
        self.work = tempfile.mkdtemp(prefix=prefix)
        self.procs = []
        work = self.work
        ironic_port, rivet_port = free_port(), free_port()
        # Kinds a caller overrides beyond those always written: Ironic takes its defaults for
        # the rest.
        written = {"deploy", "boot", "power", "management", "network", "inspect"}
        extra_kinds = "".join(f"enabled_{kind}_interfaces = {','.join(names)}\n"
                              for kind, names in sorted((interfaces or {}).items()) if kind not in written)
        with open(os.path.join(work, "ironic.conf"), "w") as f:
            f.write(f"""[DEFAULT]
auth_strategy = noauth
rpc_transport = none
host = rivet-api-compare
enabled_hardware_types = {",".join(hardware_types)}
enabled_deploy_interfaces = {",".join(enabled["deploy"])}
enabled_boot_interfaces = {",".join(enabled["boot"])}
enabled_power_interfaces = {",".join(enabled["power"])}
enabled_management_interfaces = {",".join(enabled["management"])}
enabled_network_interfaces = {",".join(enabled["network"])}
enabled_inspect_interfaces = {",".join(enabled["inspect"])}
{extra_kinds}[api]
host_ip = 127.0.0.1
port = {ironic_port}
[database]
connection = sqlite:///{work}/ironic.sqlite
[conductor]
automated_clean = false
[dhcp]
dhcp_provider = none
{ironic_extra}""")
        rivet_interfaces = "".join(f"{kind} = {json.dumps(names)}\n" for kind, names in sorted(enabled.items()))
        with open(os.path.join(work, "conductor.toml"), "w") as f:
            # The interfaces Ironic enables with the configuration above (its defaults for the kinds
            # not named, without the ones fake-hardware does not support): both servers then
            # answer from the same configuration. Rivet's own default enables every
            # implementation a hardware type supports (docs/compatibility.md).
            f.write(f"""automated_clean = false
enabled_hardware_types = {json.dumps(list(hardware_types))}
host = "rivet-api-compare"
[enabled_interfaces]
{rivet_interfaces}{rivet_extra}""")
        subprocess.run([f"{venv}/bin/ironic-dbsync", "--config-file", f"{work}/ironic.conf", "create_schema"],
                       check=True, capture_output=True)
        self.ironic = api_class("ironic", f"http://127.0.0.1:{ironic_port}")
        self.rivet = api_class("rivet", f"http://127.0.0.1:{rivet_port}")
        try:
            self.procs.append(_start([f"{venv}/bin/ironic", "--config-file", f"{work}/ironic.conf"],
                                     open(f"{work}/ironic.log", "w"), self.ironic.base))
            self.procs.append(_start([conductor, "--config", f"{work}/conductor.toml", "--listen-host", "127.0.0.1",
                                      "--listen-port", str(rivet_port), "--database-url",
                                      f"sqlite://{work}/rivet.sqlite"],
                                     open(f"{work}/conductor.log", "w"), self.rivet.base))
        except BaseException:
            self.stop()
            raise

    def stop(self):
        for p in self.procs:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        if os.environ.get("RIVET_KEEP_WORK"):
            print(f"work directory kept: {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)
