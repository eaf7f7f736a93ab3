"""Test support that ships with sdcli: a stdlib fake of the web UI API (`fake_webui`), so the
end-to-end tests, the benchmarks and curious users can run sdcli without a GPU."""
