"""What a presenter runs with the Azure CLI 2.91 against azsim: resource groups, Recovery
Services vaults and their settings, the Backup views after a real agent backup, unregistering
a server, and Key Vault management. Every command's exit code and key fields are checked."""
import subprocess
import uuid

from conftest import azsim_binary


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_resource_groups(az):
    group = unique("cli-rg")
    created = az.json("group", "create", "-n", group, "-l", "westeurope")
    assert created["name"] == group and created["location"] == "westeurope"
    assert group in {g["name"] for g in az.json("group", "list")}
    assert az.json("group", "show", "-n", group)["properties"]["provisioningState"] == "Succeeded"
    refused = az.run("group", "create", "-n", unique("cli-rg"), "-l", "nowhere-land", check=False)
    assert refused.returncode != 0 and "nowhere-land" in refused.stderr
    az.run("group", "delete", "-n", group, "--yes")
    assert group not in {g["name"] for g in az.json("group", "list")}


def test_recovery_services_vault_settings(az):
    group, vault = unique("cli-rg"), unique("cli-vault")
    az.run("group", "create", "-n", group, "-l", "westeurope")
    created = az.json("backup", "vault", "create", "-n", vault, "-g", group, "-l", "westeurope")
    assert created["name"] == vault and created["type"] == "Microsoft.RecoveryServices/vaults"
    assert az.json("backup", "vault", "show", "-n", vault, "-g", group)["location"] == "westeurope"
    assert vault in {v["name"] for v in az.json("backup", "vault", "list", "-g", group)}

    # The CLI creates vaults with soft delete AlwaysON (as Azure does today): it cannot be
    # turned off, but its duration can change.
    az.run("backup", "vault", "backup-properties", "set", "-n", vault, "-g", group,
           "--backup-storage-redundancy", "LocallyRedundant")
    az.run("backup", "vault", "backup-properties", "set", "-n", vault, "-g", group,
           "--soft-delete-duration", "30")
    storage, config = az.json("backup", "vault", "backup-properties", "show", "-n", vault, "-g", group)
    assert storage["properties"]["storageType"] == "LocallyRedundant", storage
    assert config["properties"]["softDeleteFeatureState"] == "AlwaysON", config
    assert config["properties"]["softDeleteRetentionPeriodInDays"] == 30, config

    identity = az.json("backup", "vault", "identity", "assign", "--system-assigned", "-n", vault, "-g", group)
    assert identity["identity"]["type"] == "SystemAssigned" and identity["identity"]["principalId"]

    az.run("backup", "vault", "delete", "-n", vault, "-g", group, "--yes")
    assert vault not in {v["name"] for v in az.json("backup", "vault", "list", "-g", group)}

    immutable = unique("cli-vault")
    az.run("backup", "vault", "create", "-n", immutable, "-g", group, "-l", "westeurope",
           "--immutability-state", "Unlocked")
    shown = az.json("backup", "vault", "show", "-n", immutable, "-g", group)
    assert shown["properties"]["securitySettings"]["immutabilitySettings"]["state"] == "Unlocked", shown


def test_backup_views_after_an_agent_backup_and_unregister(az, azsim, tmp_path):
    group, vault, server = unique("cli-rg"), unique("cli-vault"), "cli01.contoso.local"
    az.run("group", "create", "-n", group, "-l", "westeurope")
    az.run("backup", "vault", "create", "-n", vault, "-g", group, "-l", "westeurope")
    credentials = tmp_path / "vault.VaultCredentials"
    azsim.run("vault-credentials", "-g", group, "-v", vault, "-o", str(credentials))
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("backed up for the CLI\n" * 50)
    (tmp_path / "passphrase").write_text("cli passphrase 0123456789")
    import os
    agent = [os.path.join(os.path.dirname(azsim_binary()), "mars-agent"), "--home", str(tmp_path / "home")]
    run = lambda *args: subprocess.run([*agent, *args], check=True, capture_output=True, text=True, timeout=120)
    run("install", "--cache-dir", str(tmp_path / "cache"), "--ca-file", azsim.ca_path)
    run("register", "--vault-credentials", str(credentials), "--passphrase-file", str(tmp_path / "passphrase"),
        "--server-name", server)
    run("backup", "--include", str(data))

    common = ["-v", vault, "-g", group, "--backup-management-type", "MAB"]
    containers = az.json("backup", "container", "list", *common)
    assert [c["name"] for c in containers] == [server]
    items = az.json("backup", "item", "list", *common)
    assert len(items) == 1 and items[0]["properties"]["friendlyName"] == str(data.resolve())
    item_id = items[0]["id"]
    shown = az.json("backup", "item", "show", "--ids", item_id, "--backup-management-type", "MAB")
    assert shown["name"] == items[0]["name"]
    jobs = az.json("backup", "job", "list", "-v", vault, "-g", group)
    assert any(j["properties"]["operation"] == "Backup" and j["properties"]["status"] == "Completed" for j in jobs)
    policies = az.json("backup", "policy", "list", "-v", vault, "-g", group)
    assert "DefaultPolicy" in {p["name"] for p in policies}

    az.run("backup", "container", "unregister", "-v", vault, "-g", group, "-c", server,
           "--backup-management-type", "MAB", "--yes")
    assert az.json("backup", "container", "list", *common) == []
    refused = subprocess.run([*agent, "backup", "--include", str(data)], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "unregistered" in refused.stderr


def test_key_vault_management(az):
    group, name = unique("cli-rg"), unique("clikv")
    az.run("group", "create", "-n", group, "-l", "westeurope")
    refused = az.run("keyvault", "create", "-n", unique("clikv"), "-g", unique("nosuchrg"), "-l", "westeurope",
                     "--enable-rbac-authorization", "false", "--no-self-perms", check=False)
    assert refused.returncode != 0
    created = az.json("keyvault", "create", "-n", name, "-g", group, "-l", "westeurope",
                      "--enable-rbac-authorization", "false", "--no-self-perms")
    assert created["name"] == name
    assert name in {v["name"] for v in az.json("keyvault", "list")}
    assert name in {v["name"] for v in az.json("keyvault", "list", "-g", group)}
    assert az.json("keyvault", "show", "-n", name)["name"] == name
    policy = az.json("keyvault", "set-policy", "-n", name, "-g", group,
                     "--object-id", "a2e0c0de-5e11-4a55-9a2e-00000000001a", "--secret-permissions", "get", "list", "set")
    assert any("set" in p["permissions"]["secrets"] for p in policy["properties"]["accessPolicies"])
    az.run("keyvault", "delete", "-n", name, "-g", group)
    assert name in {v["name"] for v in az.json("keyvault", "list-deleted")}
    az.run("keyvault", "recover", "-n", name)
    assert az.json("keyvault", "show", "-n", name, "-g", group)["name"] == name
    az.run("keyvault", "delete", "-n", name, "-g", group)
    az.run("keyvault", "purge", "-n", name)
    assert name not in {v["name"] for v in az.json("keyvault", "list-deleted")}


def test_key_vault_secrets(az, tmp_path):
    group, name = unique("cli-rg"), unique("clikv")
    az.run("group", "create", "-n", group, "-l", "westeurope")
    az.run("keyvault", "create", "-n", name, "-g", group, "-l", "westeurope",
           "--enable-rbac-authorization", "false", "--no-self-perms")
    # Without an access policy the data plane refuses the admin app.
    denied = az.run("keyvault", "secret", "set", "--vault-name", name, "-n", "pw", "--value", "x", check=False)
    assert denied.returncode != 0 and "Forbidden" in denied.stderr
    az.run("keyvault", "set-policy", "-n", name, "-g", group, "--object-id", "a2e0c0de-5e11-4a55-9a2e-00000000001a",
           "--secret-permissions", "get", "list", "set", "delete", "recover", "purge", "backup", "restore")

    first = az.json("keyvault", "secret", "set", "--vault-name", name, "-n", "db-password", "--value", "hunter2")
    assert first["value"] == "hunter2" and first["id"].startswith(f"https://{name}.vault.localhost:")
    az.json("keyvault", "secret", "set", "--vault-name", name, "-n", "db-password", "--value", "hunter3")
    shown = az.json("keyvault", "secret", "show", "--vault-name", name, "-n", "db-password")
    assert shown["value"] == "hunter3"
    assert az.json("keyvault", "secret", "show", "--id", first["id"])["value"] == "hunter2"
    assert "db-password" in {s["name"] for s in az.json("keyvault", "secret", "list", "--vault-name", name)}
    missing = az.run("keyvault", "secret", "show", "--vault-name", name, "-n", "nosuch", check=False)
    assert missing.returncode != 0 and "SecretNotFound" in missing.stderr

    backup = tmp_path / "db-password.backup"
    az.run("keyvault", "secret", "backup", "--vault-name", name, "-n", "db-password", "-f", str(backup))
    assert backup.stat().st_size > 0

    az.run("keyvault", "secret", "delete", "--vault-name", name, "-n", "db-password")
    deleted = az.json("keyvault", "secret", "list-deleted", "--vault-name", name)
    assert "db-password" in {s["name"] for s in deleted}
    az.run("keyvault", "secret", "recover", "--vault-name", name, "-n", "db-password")
    wait_for(lambda: az.run("keyvault", "secret", "show", "--vault-name", name, "-n", "db-password",
                            check=False).returncode == 0)
    az.run("keyvault", "secret", "delete", "--vault-name", name, "-n", "db-password")
    az.run("keyvault", "secret", "purge", "--vault-name", name, "-n", "db-password")
    assert "db-password" not in {s["name"] for s in az.json("keyvault", "secret", "list-deleted", "--vault-name", name)}

    restored = az.json("keyvault", "secret", "restore", "--vault-name", name, "-f", str(backup))
    assert restored["id"].startswith(f"https://{name}.vault.localhost:")
    assert az.json("keyvault", "secret", "show", "--vault-name", name, "-n", "db-password")["value"] == "hunter3"


def wait_for(condition, seconds=30):
    import time
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, "condition not met in time"
        time.sleep(0.2)
