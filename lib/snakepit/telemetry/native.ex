defmodule Snakepit.Telemetry.Native do
  @moduledoc false
  # Every NIF of the Rust crate `native/snakepit_telemetry_nif`, grouped by
  # area. Public modules validate their arguments and call these.
  #
  # The library is loaded when this module is loaded. If that fails the
  # module still loads, and every call raises an error that says what went
  # wrong and how to fix it, instead of a bare :nif_not_loaded.

  @on_load :load_nif
  @library "snakepit_telemetry_nif"

  @doc false
  def load_nif do
    path = library_path()
    load_info = %{native_time_unit: :erlang.convert_time_unit(1, :second, :native)}

    case :erlang.load_nif(String.to_charlist(path), load_info) do
      :ok ->
        :persistent_term.erase({__MODULE__, :load_error})
        :ok

      {:error, {reason, text}} ->
        :persistent_term.put({__MODULE__, :load_error}, {path, reason, to_string(text)})
        :ok
    end
  end

  # SNAKEPIT_TELEMETRY_NIF overrides where the library is loaded from
  # (without the .so suffix), for deployments that ship it elsewhere.
  @doc false
  def library_path do
    System.get_env("SNAKEPIT_TELEMETRY_NIF") || default_library_path()
  end

  defp default_library_path do
    case :code.priv_dir(:snakepit_telemetry) do
      {:error, _} -> Path.expand("../../../priv/native/#{@library}", __DIR__)
      priv -> Path.join([to_string(priv), "native", @library])
    end
  end

  @doc "`nil` when the NIF is loaded, otherwise `{path, reason, text}`."
  def load_error, do: :persistent_term.get({__MODULE__, :load_error}, nil)

  @doc false
  def loaded?, do: load_error() == nil

  ## Catalog

  def catalog_summary, do: not_loaded()
  def catalog_version, do: not_loaded()
  def catalog_install(_extension_json), do: not_loaded()
  def fake_worker_start, do: not_loaded()

  def fake_worker_emit(_handle, _name, _measurements, _metadata, _correlation_id),
    do: not_loaded()

  def fake_worker_state(_handle), do: not_loaded()
  def fake_worker_kill(_handle), do: not_loaded()
  def catalog_installed_summary, do: not_loaded()

  ## gRPC streams (one Rust task per worker)

  def stream_start(_opts, _owner), do: not_loaded()
  def stream_stop(_handle), do: not_loaded()
  def stream_control(_handle, _control), do: not_loaded()
  def stream_ack(_handle, _n), do: not_loaded()
  def stream_stats(_handle), do: not_loaded()
  def streams_running, do: not_loaded()

  # `[{nif_name, calls, max_ns, calls_over_1ms}]`: each NIF's calls since
  # the last take, the most thread CPU time one took, and how many took
  # over 1 ms (the scheduler-safety test); starts over.
  def nif_cpu_take, do: not_loaded()

  ## Tool calls

  def channel_open(_endpoint, _connect_timeout_ms, _token, _tls), do: not_loaded()
  def ping_call(_channel, _message, _timeout_ms, _reply_to, _ref), do: not_loaded()
  def tool_call(_channel, _tool, _params, _opts, _reply_to, _ref), do: not_loaded()

  ## stderr fallback

  # Lines of at most 8 KiB on the calling scheduler, longer ones on a dirty
  # CPU scheduler (see PythonCapture.parse/1).
  def stderr_parse_line(_line), do: not_loaded()
  def stderr_parse_line_dirty(_line), do: not_loaded()

  # The stderr ingest thread (Snakepit.Telemetry.StderrIngest).
  def stderr_ingest_start(_owner), do: not_loaded()
  def stderr_ingest_push(_handle, _line), do: not_loaded()
  def stderr_ingest_ack(_handle, _n), do: not_loaded()
  def stderr_ingest_stats(_handle), do: not_loaded()

  defp not_loaded do
    {path, reason, text} = load_error() || {library_path(), :unknown, "unknown"}

    raise ErlangError,
      original:
        "the Snakepit telemetry NIF is not loaded (#{reason}: #{text}). " <>
          "Expected #{path}.so, built by `mix compile` (the :snakepit_nif compiler runs " <>
          "cargo; needs Rust) or `make setup`. Run `mix compile --force` to rebuild it."
  end
end
