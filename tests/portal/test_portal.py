"""The portal in a real browser (Debian's chromium, headless, driven over WebDriver): sign in
through entra-sim (authorization code + PKCE), create a resource group and a vault (the name
rules first), switch to LRS, turn on the vault's identity, download vault credentials and
register a real mars-agent with them, back up, and see the server, the item, the recovery
point and the job appear; changing redundancy is then refused; soft-delete retention, Key
Vault access for the vault's identity, and deleting (unregistering) the server. A screenshot of each step
goes to target/portal-screenshots/."""
import json
import os
import subprocess
import time
import uuid

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.keyvault import KeyVaultManagementClient
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.support.ui import Select, WebDriverWait

from pytest_azsim import ADMIN_USER_PASSWORD, azsim_binary

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHOTS = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "portal-screenshots")


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,800",
                 # The simulator's development CA is not in the browser's store.
                 "--ignore-certificate-errors"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(tmp_path / "downloads"),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")),
                              options=options)
    driver.implicitly_wait(5)
    os.makedirs(SHOTS, exist_ok=True)
    yield driver
    driver.quit()


def shot(driver, name, at=None):
    """A screenshot of the page's top, or of the part from element id `at` down."""
    if at:
        driver.execute_script("document.getElementById(arguments[0]).scrollIntoView()", at)
    else:
        driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(os.path.join(SHOTS, f"{name}.png"))


def text_of(driver, by, value):
    return driver.find_element(by, value).text


def click_and_wait(driver, element_id, condition):
    """Clicks, then waits for the next page to satisfy `condition(driver)` (the old page's
    elements go stale while it loads)."""
    driver.find_element(By.ID, element_id).click()
    return WebDriverWait(driver, 15, ignored_exceptions=[StaleElementReferenceException, NoSuchElementException]) \
        .until(condition)


def wait_for(condition, seconds=30):
    deadline = time.time() + seconds
    while True:
        value = condition()
        if value:
            return value
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


def test_a_presenter_creates_a_vault_registers_an_agent_and_watches_the_backup(azsim, browser, tmp_path):
    driver = browser
    driver.get(f"{azsim.arm_url}/portal")
    # No session: the portal sends the browser to entra-sim's sign-in page.
    assert "/oauth2/v2.0/authorize" in driver.current_url
    assert "code_challenge_method=S256" in driver.current_url
    shot(driver, "01-sign-in")
    driver.find_element(By.ID, "password").send_keys("a wrong password")
    click_and_wait(driver, "sign-in", lambda d: "AADSTS50126" in text_of(d, By.CSS_SELECTOR, "[role=alert]"))
    driver.find_element(By.ID, "password").send_keys(ADMIN_USER_PASSWORD)
    click_and_wait(driver, "sign-in", lambda d: text_of(d, By.TAG_NAME, "h1") == "Recovery Services vaults")
    shot(driver, "02-vaults")

    group, vault = f"portal-rg-{uuid.uuid4().hex[:6]}", f"portal-vault-{uuid.uuid4().hex[:6]}"
    driver.find_element(By.ID, "new_resource_group").send_keys(group)
    driver.find_element(By.ID, "name").send_keys("1-starts-with-a-digit")
    Select(driver.find_element(By.ID, "location")).select_by_value("westeurope")
    notice = click_and_wait(driver, "create", lambda d: text_of(d, By.ID, "notice"))
    assert "1-starts-with-a-digit" in notice, notice
    shot(driver, "03-name-rules")
    name = driver.find_element(By.ID, "name")
    name.clear()
    name.send_keys(vault)
    click_and_wait(driver, "create", lambda d: text_of(d, By.TAG_NAME, "h1").startswith(vault))
    assert driver.find_element(By.ID, "redundancy").text == "GeoRedundant"

    Select(driver.find_element(By.ID, "redundancy-select")).select_by_value("LocallyRedundant")
    click_and_wait(driver, "save-redundancy", lambda d: text_of(d, By.ID, "notice") == "Saved.")
    assert driver.find_element(By.ID, "redundancy").text == "LocallyRedundant"
    Select(driver.find_element(By.ID, "identity-select")).select_by_value("on")
    click_and_wait(driver, "save-identity", lambda d: "System assigned, principal" in text_of(d, By.ID, "identity"))
    shot(driver, "04-vault-properties")

    driver.find_element(By.ID, "download-credentials").click()
    downloads = tmp_path / "downloads"
    credentials = wait_for(lambda: [p for p in downloads.glob("*.VaultCredentials")] if downloads.exists() else None)[0]
    assert "<ResourceName>" + vault in credentials.read_text()

    data = tmp_path / "data"
    data.mkdir()
    (data / "slides.txt").write_text("the demo's slides\n" * 500)
    (tmp_path / "passphrase").write_text("portal demo passphrase 0123456789")
    agent = [os.path.join(os.path.dirname(azsim_binary()), "mars-agent"), "--home", str(tmp_path / "home")]
    run = lambda *args: subprocess.run([*agent, *args], check=True, capture_output=True, text=True, timeout=120)
    run("install", "--cache-dir", str(tmp_path / "cache"), "--ca-file", azsim.ca_path)
    run("register", "--vault-credentials", str(credentials), "--passphrase-file", str(tmp_path / "passphrase"),
        "--server-name", "demo-server")
    run("backup", "--include", str(data))

    driver.refresh()
    WebDriverWait(driver, 15, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda d: "demo-server" in text_of(d, By.ID, "servers"))
    servers = driver.find_element(By.ID, "servers").text
    assert "demo-server" in servers
    assert str(data) in driver.find_element(By.ID, "items").text
    assert len(driver.find_elements(By.CSS_SELECTOR, "#items li.point")) == 1
    jobs = driver.find_element(By.ID, "jobs").text
    assert "Backup" in jobs and "Completed" in jobs
    # Items are protected: the replication type is fixed now, and the page says why.
    assert not driver.find_element(By.ID, "redundancy-select").is_enabled()
    assert "cannot be changed once items are protected" in driver.find_element(By.ID, "backup-configuration").text
    shot(driver, "05-backed-up")
    shot(driver, "06-backup-infrastructure", at="servers")

    # Soft delete's retention, and Key Vault access for the vault's identity (a Key Vault
    # seeded for the demo).
    days = driver.find_element(By.ID, "soft-delete-days")
    days.clear()
    days.send_keys("30")
    click_and_wait(driver, "save-soft-delete", lambda d: text_of(d, By.ID, "notice") == "Saved.")
    assert driver.find_element(By.ID, "soft-delete-days").get_attribute("value") == "30"
    key_vault = f"portalkv{uuid.uuid4().hex[:6]}"
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"keyVaults": [{"resourceGroup": group, "name": key_vault, "location": "westeurope"}]}))
    azsim.run("seed", str(seed))
    driver.refresh()
    Select(driver.find_element(By.ID, "key-vault-select")).select_by_visible_text(key_vault)
    click_and_wait(driver, "grant-key-vault", lambda d: text_of(d, By.ID, "notice") == "Saved.")
    shot(driver, "07-key-vault-access", at="key-vault-form")

    Select(driver.find_element(By.ID, "operation")).select_by_value("Restore")
    click_and_wait(driver, "filter-jobs", lambda d: "operation=Restore" in d.current_url
                   and "No jobs." in text_of(d, By.ID, "jobs"))

    # The vault identity may now set secrets in that Key Vault.
    admin = azsim.credential()
    principal = driver.find_element(By.ID, "identity").text.rsplit(" ", 1)[1]
    policies = KeyVaultManagementClient(admin, azsim.subscription_id, base_url=azsim.arm_url) \
        .vaults.get(group, key_vault).properties.access_policies
    assert any(p.object_id == principal and "set" in p.permissions.secrets for p in policies)

    # The refusal comes from ARM too, for a client that tries anyway.
    with pytest.raises(HttpResponseError):
        azsim.recovery_services_client().vaults.begin_update(group, vault, {"properties": {"redundancySettings": {
            "standardTierStorageRedundancy": "GeoRedundant"}}}).result()

    # Backup Infrastructure › Delete: the server is unregistered.
    click_and_wait(driver, "delete-server-demo-server", lambda d: "was unregistered" in text_of(d, By.ID, "notice"))
    assert "No server registered yet." in driver.find_element(By.ID, "servers").text
    refused = subprocess.run([*agent, "backup", "--include", str(data)], capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0, "the unregistered agent can no longer back up"

