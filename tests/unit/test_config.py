"""Settings: profile defaults, environment, the TOML file, and one ConfigError per mistake."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from seiwallet.config import LOCAL_CHAIN_ID, PROFILES, Settings, load_settings
from seiwallet.errors import ConfigError, SeiwalletError

MAINNET_USDC = "0xe15fC38F6D8c56aF07bbCBe3BAf5708A2Bf42392"
EURC = "0x1aBaEA1f7C830bD89Acc67eC4af516284b1bC33c"
SPONSOR_KEY = "0x" + "ab" * 32


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No SEIWALLET_* variable of the real environment, and a working directory of our own."""
    for name in list(os.environ):
        if name.upper().startswith("SEIWALLET_"):
            monkeypatch.delenv(name)
    # The default data_dir is relative: resolve it under tmp_path, never the checkout.
    monkeypatch.chdir(tmp_path)


def write_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    path = tmp_path / "seiwallet.toml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("SEIWALLET_CONFIG", str(path))
    return path


def config_error(**overrides: object) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_settings(**overrides)
    return caught.value


# ---------------------------------------------------------------------------------------------
# Defaults and profiles
# ---------------------------------------------------------------------------------------------


def test_defaults_select_the_local_chain(tmp_path: Path) -> None:
    settings = load_settings()

    assert settings.profile == "local"
    assert settings.network is PROFILES["local"]
    assert settings.network.chain_id == LOCAL_CHAIN_ID == 713_715
    assert settings.network.is_local
    assert settings.effective_rpc_url == "http://127.0.0.1:8545"
    assert settings.effective_confirmations == 1
    assert settings.token_addresses() == {}
    assert settings.sponsor_keys == []
    assert settings.rpc_timeout == 10.0


def test_default_database_is_an_absolute_sqlite_file_under_data_dir(tmp_path: Path) -> None:
    settings = load_settings()

    expected = (tmp_path / ".seiwallet" / "local.sqlite3").resolve()
    assert settings.data_dir == Path(".seiwallet")
    assert settings.effective_database_url == f"sqlite:///{expected}"
    assert Path(settings.effective_database_url.removeprefix("sqlite:///")).is_absolute()
    assert settings.deployment_manifest_path == Path(".seiwallet/deployments/local.json")


def test_database_file_is_named_after_the_profile_in_the_configured_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEIWALLET_DATA_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SEIWALLET_PROFILE", "sei-testnet")

    settings = load_settings()

    expected = (tmp_path / "state" / "sei-testnet.sqlite3").resolve()
    assert settings.effective_database_url == f"sqlite:///{expected}"
    assert settings.deployment_manifest_path == tmp_path / "state/deployments/sei-testnet.json"


def test_local_chain_defaults_are_sei_like() -> None:
    chain = load_settings().local_chain

    assert (chain.host, chain.port) == ("127.0.0.1", 8545)
    assert chain.block_time == 0.4
    assert chain.gas_limit == 10_000_000
    assert chain.hardfork == "prague"
    assert chain.prune_history is True


@pytest.mark.parametrize(
    ("profile", "chain_id", "rpc_url", "is_local"),
    [
        ("local", LOCAL_CHAIN_ID, "http://127.0.0.1:8545", True),
        ("sei-testnet", 1328, "https://evm-rpc-testnet.sei-apis.com", False),
        ("sei-mainnet", 1329, "https://evm-rpc.sei-apis.com", False),
    ],
)
def test_each_profile_has_its_chain_and_endpoint(
    monkeypatch: pytest.MonkeyPatch, profile: str, chain_id: int, rpc_url: str, is_local: bool
) -> None:
    monkeypatch.setenv("SEIWALLET_PROFILE", profile)

    settings = load_settings()

    assert settings.profile == profile
    assert settings.network.name == profile
    assert settings.network.chain_id == chain_id
    assert settings.network.is_local is is_local
    assert settings.effective_rpc_url == rpc_url
    assert settings.effective_confirmations == 1


def test_profiles_are_exactly_the_three_known_networks() -> None:
    assert set(PROFILES) == {"local", "sei-testnet", "sei-mainnet"}
    assert len({profile.chain_id for profile in PROFILES.values()}) == 3
    with pytest.raises(TypeError):
        PROFILES["other"] = PROFILES["local"]  # type: ignore[index]


def test_mainnet_knows_native_usdc_and_testnet_and_local_know_no_token() -> None:
    assert dict(PROFILES["sei-mainnet"].tokens) == {"USDC": MAINNET_USDC}
    assert dict(PROFILES["sei-testnet"].tokens) == {}
    assert dict(PROFILES["local"].tokens) == {}
    assert load_settings(profile="sei-mainnet").token_addresses() == {"USDC": MAINNET_USDC}


def test_explorer_links_exist_for_public_networks_only() -> None:
    tx = "0x" + "12" * 32

    assert PROFILES["sei-mainnet"].explorer_link(tx) == (
        f"https://seitrace.com/tx/{tx}?chain=pacific-1"
    )
    assert PROFILES["sei-testnet"].explorer_link(tx) == (
        f"https://seitrace.com/tx/{tx}?chain=atlantic-2"
    )
    assert PROFILES["local"].explorer_link(tx) is None


# ---------------------------------------------------------------------------------------------
# Environment variables
# ---------------------------------------------------------------------------------------------


def test_rpc_url_from_the_environment_replaces_the_profile_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEIWALLET_PROFILE", "sei-testnet")
    monkeypatch.setenv("SEIWALLET_RPC_URL", "https://rpc.example.test/sei")

    settings = load_settings()

    assert settings.rpc_url == "https://rpc.example.test/sei"
    assert settings.effective_rpc_url == "https://rpc.example.test/sei"
    assert settings.network.chain_id == 1328


def test_database_url_from_the_environment_is_used_as_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = "postgresql+psycopg://wallet@db.example.test:5432/seiwallet"
    monkeypatch.setenv("SEIWALLET_DATABASE_URL", url)

    assert load_settings().effective_database_url == url


def test_tokens_from_the_environment_are_json_and_add_to_the_profile_tokens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEIWALLET_PROFILE", "sei-mainnet")
    monkeypatch.setenv("SEIWALLET_TOKENS", f'{{"EURC": "{EURC}"}}')

    assert load_settings().token_addresses() == {"USDC": MAINNET_USDC, "EURC": EURC}


def test_tokens_from_the_environment_override_the_profile_tokens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mock_usdc = "0x" + "11" * 20
    monkeypatch.setenv("SEIWALLET_PROFILE", "sei-mainnet")
    monkeypatch.setenv("SEIWALLET_TOKENS", f'{{"USDC": "{mock_usdc}"}}')

    assert load_settings().token_addresses() == {"USDC": mock_usdc}
    # The profile itself is shared and stays as shipped.
    assert PROFILES["sei-mainnet"].tokens["USDC"] == MAINNET_USDC


def test_confirmations_from_the_environment_override_the_profile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEIWALLET_CONFIRMATIONS", "12")

    assert load_settings().effective_confirmations == 12


def test_sponsor_keys_are_a_json_list_of_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEIWALLET_SPONSOR_KEYS", f'["{SPONSOR_KEY}"]')

    settings = load_settings()

    assert [key.get_secret_value() for key in settings.sponsor_keys] == [SPONSOR_KEY]
    assert SPONSOR_KEY not in repr(settings)
    assert SPONSOR_KEY not in str(settings)


def test_variable_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("seiwallet_profile", "sei-mainnet")

    assert load_settings().profile == "sei-mainnet"


def test_local_chain_settings_use_the_nested_delimiter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEIWALLET_LOCAL_CHAIN__BLOCK_TIME", "1.5")
    monkeypatch.setenv("SEIWALLET_LOCAL_CHAIN__PORT", "9545")
    monkeypatch.setenv("SEIWALLET_LOCAL_CHAIN__PRUNE_HISTORY", "false")

    chain = load_settings().local_chain

    assert chain.block_time == 1.5
    assert chain.port == 9545
    assert chain.prune_history is False
    assert chain.host == "127.0.0.1"


def test_local_chain_has_one_spelling_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """SEIWALLET_LOCAL_BLOCK_TIME is not a setting: only the ``__`` form is (module docstring)."""
    monkeypatch.setenv("SEIWALLET_LOCAL_BLOCK_TIME", "5")
    monkeypatch.setenv("SEIWALLET_LOCAL_PORT", "1")

    chain = load_settings().local_chain

    assert chain.block_time == 0.4
    assert chain.port == 8545


def test_keyword_overrides_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEIWALLET_PROFILE", "sei-mainnet")

    assert load_settings(profile="sei-testnet").network.chain_id == 1328


def test_settings_read_the_environment_afresh_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_settings()
    monkeypatch.setenv("SEIWALLET_PROFILE", "sei-testnet")

    assert first.profile == "local"
    assert load_settings().profile == "sei-testnet"
    assert isinstance(load_settings(), Settings)


# ---------------------------------------------------------------------------------------------
# The TOML file named by SEIWALLET_CONFIG
# ---------------------------------------------------------------------------------------------


def test_toml_file_supplies_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(
        tmp_path,
        monkeypatch,
        f"""
profile = "sei-mainnet"
rpc_url = "https://rpc.example.test"
data_dir = "{(tmp_path / "data").as_posix()}"
confirmations = 3

[tokens]
EURC = "{EURC}"

[local_chain]
port = 9000
block_time = 2
""",
    )

    settings = load_settings()

    assert settings.profile == "sei-mainnet"
    assert settings.effective_rpc_url == "https://rpc.example.test"
    assert settings.data_dir == tmp_path / "data"
    assert settings.effective_confirmations == 3
    assert settings.token_addresses() == {"USDC": MAINNET_USDC, "EURC": EURC}
    assert settings.local_chain.port == 9000
    assert settings.local_chain.block_time == 2.0


def test_environment_beats_the_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path, monkeypatch, 'profile = "sei-testnet"\nrpc_timeout = 30\n')
    monkeypatch.setenv("SEIWALLET_PROFILE", "sei-mainnet")

    settings = load_settings()

    assert settings.profile == "sei-mainnet"
    assert settings.rpc_timeout == 30.0


def test_nested_settings_merge_environment_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path, monkeypatch, "[local_chain]\nport = 9000\nhost = '10.0.0.1'\n")
    monkeypatch.setenv("SEIWALLET_LOCAL_CHAIN__HOST", "0.0.0.0")

    chain = load_settings().local_chain

    assert (chain.host, chain.port) == ("0.0.0.0", 9000)


def test_without_seiwallet_config_no_file_is_read(tmp_path: Path) -> None:
    # A file with a conventional name in the working directory is not picked up by itself.
    (tmp_path / "seiwallet.toml").write_text('profile = "sei-mainnet"\n', encoding="utf-8")
    (tmp_path / ".env").write_text("SEIWALLET_PROFILE=sei-mainnet\n", encoding="utf-8")

    assert load_settings().profile == "local"


# ---------------------------------------------------------------------------------------------
# Every mistake is one ConfigError naming the variable to fix
# ---------------------------------------------------------------------------------------------


def assert_names(error: ConfigError, variable: str, problem: str) -> None:
    message = str(error)
    assert isinstance(error, SeiwalletError)
    assert error.code == "config.invalid"
    assert error.setting == variable
    assert message.startswith(f"setting {variable}: ")
    assert problem in message
    assert "\n" not in message
    # pydantic's multi-line report is not chained on: the one line is the whole story.
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("SEIWALLET_PROFILE", "sei-devnet", "'local', 'sei-testnet' or 'sei-mainnet'"),
        ("SEIWALLET_RPC_URL", "ws://127.0.0.1:8546", "must be an http:// or https:// URL"),
        ("SEIWALLET_RPC_URL", "127.0.0.1:8545", "must be an http:// or https:// URL"),
        ("SEIWALLET_RPC_URL", "", "must be an http:// or https:// URL"),
        ("SEIWALLET_CONFIRMATIONS", "-1", "greater than or equal to 1"),
        ("SEIWALLET_CONFIRMATIONS", "0", "greater than or equal to 1"),
        ("SEIWALLET_CONFIRMATIONS", "1001", "less than or equal to 1000"),
        ("SEIWALLET_CONFIRMATIONS", "many", "valid integer"),
        ("SEIWALLET_RPC_TIMEOUT", "0", "greater than 0"),
        ("SEIWALLET_LOCAL_CHAIN__BLOCK_TIME", "-0.4", "greater than 0"),
        ("SEIWALLET_LOCAL_CHAIN__PORT", "70000", "less than or equal to 65535"),
        ("SEIWALLET_TOKENS", '{"EURC": }', "must be JSON"),
    ],
)
def test_bad_environment_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, problem: str
) -> None:
    monkeypatch.setenv(variable, value)

    assert_names(config_error(), variable, problem)


def test_bad_table_entry_names_the_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEIWALLET_TOKENS", '{"EURC": 5}')

    assert_names(config_error(), "SEIWALLET_TOKENS__EURC", "valid string")


def test_bad_sponsor_keys_are_named_without_repeating_the_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEIWALLET_SPONSOR_KEYS", SPONSOR_KEY)  # not a JSON list

    error = config_error()

    assert_names(error, "SEIWALLET_SPONSOR_KEYS", "must be JSON")
    assert SPONSOR_KEY not in str(error)


def test_a_bad_list_item_names_the_list_not_its_index(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEIWALLET_SPONSOR_KEYS", "[1]")

    assert_names(config_error(), "SEIWALLET_SPONSOR_KEYS", "valid string")


def test_bad_keyword_override_names_its_variable() -> None:
    assert_names(config_error(confirmations=-1), "SEIWALLET_CONFIRMATIONS", "greater than")


def test_unknown_keyword_override_is_refused() -> None:
    assert_names(config_error(rpc_uri="http://x"), "SEIWALLET_RPC_URI", "Extra inputs")


def test_unknown_setting_in_the_toml_file_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, monkeypatch, 'profile = "local"\nrpc_uri = "http://x"\n')

    error = config_error()

    assert_names(error, "SEIWALLET_CONFIG", f"unknown setting 'rpc_uri' in {path}")
    assert "rpc_url" in str(error)  # the list of known settings shows the right spelling


def test_unknown_nested_setting_in_the_toml_file_names_its_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path, monkeypatch, "[local_chain]\nblocktime = 1\n")

    error = config_error()

    assert_names(error, "SEIWALLET_CONFIG", "unknown setting 'local_chain.blocktime'")
    assert "block_time" in str(error)


def test_bad_value_in_the_toml_file_names_its_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path, monkeypatch, 'profile = "sei-devnet"\n')

    assert_names(config_error(), "SEIWALLET_PROFILE", "'local', 'sei-testnet' or 'sei-mainnet'")


def test_bad_nested_value_in_the_toml_file_names_its_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path, monkeypatch, "[local_chain]\nblock_time = 0\n")

    assert_names(config_error(), "SEIWALLET_LOCAL_CHAIN__BLOCK_TIME", "greater than 0")


def test_missing_toml_file_is_an_error_not_silence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nowhere" / "seiwallet.toml"
    monkeypatch.setenv("SEIWALLET_CONFIG", str(missing))

    assert_names(config_error(), "SEIWALLET_CONFIG", f"no such file: {missing}")


def test_toml_file_that_is_a_directory_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEIWALLET_CONFIG", str(tmp_path))

    assert_names(config_error(), "SEIWALLET_CONFIG", "no such file")


def test_malformed_toml_file_names_the_file_and_the_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, monkeypatch, 'profile = "local"\nrpc_url = \n')

    assert_names(config_error(), "SEIWALLET_CONFIG", f"cannot read {path}: ")
    assert "line 2" in str(config_error())


def test_bad_environment_value_is_named_with_a_config_file_in_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path, monkeypatch, 'profile = "local"\n')
    monkeypatch.setenv("SEIWALLET_RPC_URL", "ftp://example.test")

    assert_names(config_error(), "SEIWALLET_RPC_URL", "http://")
