defmodule Snakepit.GRPCWorker do
  @moduledoc """
  One supervised Python worker: `priv/python/grpc_server.py` started as a
  port, its telemetry stream registered with `Snakepit.Telemetry.GrpcStream`,
  and a gRPC channel for tool calls.

  Start-up: the worker prints `SNAKEPIT_READY {"port": P, "pid": N}` once it
  listens; this process waits for that line (`:ready_timeout`, default
  15 s) and fails with a clear error otherwise. Its other output lines go
  through `Snakepit.Telemetry.StderrIngest` (parsed off the schedulers, as
  `PythonCapture` does): `TELEMETRY:` lines become
  events, the rest are logged with the worker id.

  Authentication: each worker process gets a fresh random token
  (`Snakepit.Auth.new_token/0`), written as the first line of its stdin
  (`--auth-token-stdin`: never on a command line or in an environment); the
  telemetry stream and every tool call send it, and the worker refuses any
  call without it (`UNAUTHENTICATED`).

  Attaching: with `:endpoint` it starts no process and attaches to a worker
  that already runs (on another host, say): its telemetry stream and tool
  calls use the given `:token` and `:tls` options (`Snakepit.TLS`); plain
  text to a non-loopback host needs `insecure: true`.

  Events: `[:snakepit, :pool, :worker, :spawn_started]` before the Python
  process starts, `[:snakepit, :pool, :worker, :spawned]` when ready,
  `[:snakepit, :pool, :worker, :spawn_failed]` (with `reason`, logged at
  error with what to do) when it cannot start or exits before its ready line,
  `[:snakepit, :pool, :worker, :terminated]` when it ends.

  No Python process outlives its worker: on stop or crash this process
  terminates it (SIGTERM, then SIGKILL after `:shutdown_grace`), and if the
  BEAM itself dies the worker sees its stdin close and its parent change and
  exits on its own.
  """

  use GenServer, restart: :transient
  require Logger

  alias Snakepit.{Args, Auth, OSProcess, Stray, TLS}
  alias Snakepit.GRPC.Client
  alias Snakepit.GRPCWorker.StartupOutput
  alias Snakepit.Telemetry.{GrpcStream, Naming, StderrIngest}

  @ready "SNAKEPIT_READY "
  # Output lines longer than this are counted (line_too_long), never held.
  @max_line Snakepit.Telemetry.Catalog.limits().max_stderr_line_bytes
  # Our worker accepts pings every second (grpc_server.py): ping an idle
  # stream every 10 s, so a stalled worker is found within about 20 s.
  @stream_defaults [keepalive_interval_ms: 10_000, keepalive_timeout_ms: 10_000]

  @doc """
  Starts a worker.

  ## Options

    * `:id` - worker id (required)
    * `:pool_name` - default `:default`
    * `:python` - interpreter (default `Snakepit.Python.executable/0`); a
      path or a name looked up on `PATH`. One that cannot be found fails the
      start with `{:error, {:python_not_found, python}}`
    * `:python_path` - folders put on the worker's `PYTHONPATH`, before the
      library's own (where your tool modules live), e.g. `["priv/python"]`
    * `:args` - extra arguments for `grpc_server.py` (e.g. `["--sample-interval-ms", "500"]`)
    * `:env` - extra environment `[{"NAME", "value"}]`
    * `:ready_timeout` - ms to wait for the ready line (default 15000)
    * `:shutdown_grace` - ms between SIGTERM and SIGKILL (default 2000)
    * `:demo_tools` - load the demo and test tools (`emit_events`, `fail`,
      `telemetry_demo`, `telemetry_state`, `emit_random`; default
      `config :snakepit_telemetry, :demo_tools`, else `false`: a worker
      exposes only `ping` and its adapter's tools)
    * `:max_delay_ms` - how long an event may wait in the worker for its
      telemetry batch to fill (default 5; `0` sends each event at once):
      fewer, larger frames at steady rates, at that much latency
    * `:restart_count` - how many times the pool restarted this worker id
      (set by `Snakepit.Pool`; the `retry_count` of `spawn_failed`)
    * `:notify` - a pid: `start_link/1` returns once the worker id is
      registered, and the Python start goes on in the worker; the pid gets
      `{:snakepit_worker_ready, worker, id}` when it is ready, or the
      worker exits with the start error (how `Snakepit.Pool` starts workers)
    * `:stream` - options for `GrpcStream.register_worker/3` (defaults:
      keepalive every 10 s, 10 s timeout: a stalled worker is found within
      about 20 s)

  To attach to a running worker instead of starting one:

    * `:endpoint` - its `host:port`
    * `:token` - its token (`nil` for a worker started with `--no-auth`)
    * `:tls` - TLS options (`Snakepit.TLS`: `ca_file`, `cert_file`,
      `key_file`, `server_name`)
    * `:insecure` - `true` allows plain text to a non-loopback host
  """
  def start_link(opts) do
    with :ok <- validate(opts), do: GenServer.start_link(__MODULE__, opts)
  end

  @options [
    :id,
    :pool_name,
    :python,
    :python_path,
    :args,
    :env,
    :ready_timeout,
    :shutdown_grace,
    :stream,
    :demo_tools,
    :max_delay_ms,
    :endpoint,
    :token,
    :tls,
    :insecure,
    :restart_count,
    :notify
  ]

  defp validate(opts) do
    cond do
      not Keyword.keyword?(opts) ->
        {:error, {:invalid_options, opts}}

      bad = Enum.find(opts, fn {k, _} -> k not in @options end) ->
        {:error, {:unknown_option, bad}}

      not match?({:ok, _}, GrpcStream.Registration.worker_id(opts[:id])) ->
        {:error, {:invalid_option, {:id, opts[:id]}}}

      not is_atom(Keyword.get(opts, :pool_name, :default)) ->
        {:error, {:invalid_option, {:pool_name, opts[:pool_name]}}}

      not (is_nil(opts[:python]) or is_binary(opts[:python])) ->
        {:error, {:invalid_option, {:python, opts[:python]}}}

      not match?(t when is_integer(t) and t > 0, Keyword.get(opts, :ready_timeout, 15_000)) ->
        {:error, {:invalid_option, {:ready_timeout, opts[:ready_timeout]}}}

      not match?(t when is_integer(t) and t >= 0, Keyword.get(opts, :shutdown_grace, 2_000)) ->
        {:error, {:invalid_option, {:shutdown_grace, opts[:shutdown_grace]}}}

      not (is_nil(opts[:notify]) or is_pid(opts[:notify])) ->
        {:error, {:invalid_option, {:notify, opts[:notify]}}}

      not match?(n when is_integer(n) and n >= 0, Keyword.get(opts, :restart_count, 0)) ->
        {:error, {:invalid_option, {:restart_count, opts[:restart_count]}}}

      not is_boolean(Keyword.get(opts, :demo_tools, false)) ->
        {:error, {:invalid_option, {:demo_tools, opts[:demo_tools]}}}

      not match?(
        d when is_number(d) and d >= 0 and d <= 10_000,
        Keyword.get(opts, :max_delay_ms, 5)
      ) ->
        {:error, {:invalid_option, {:max_delay_ms, opts[:max_delay_ms]}}}

      not Keyword.keyword?(Keyword.get(opts, :stream, [])) ->
        {:error, {:invalid_option, {:stream, opts[:stream]}}}

      not Args.list_of?(Keyword.get(opts, :args, []), &is_binary/1) ->
        {:error, {:invalid_option, {:args, opts[:args]}}}

      not Snakepit.Python.path_list?(Keyword.get(opts, :python_path, [])) ->
        {:error, {:invalid_option, {:python_path, opts[:python_path]}}}

      not Args.list_of?(Keyword.get(opts, :env, []), &match?({_, v} when is_binary(v), &1)) ->
        {:error, {:invalid_option, {:env, opts[:env]}}}

      Keyword.has_key?(opts, :endpoint) ->
        validate_attach(opts)

      true ->
        :ok
    end
  end

  defp validate_attach(opts) do
    with {:ok, endpoint} <- GrpcStream.Registration.endpoint(opts[:endpoint]),
         {:ok, _} <- Auth.token(opts[:token]),
         {:ok, tls} <- TLS.options(opts[:tls]),
         true <-
           is_boolean(Keyword.get(opts, :insecure, false)) ||
             {:error, {:invalid_option, {:insecure, opts[:insecure]}}} do
      TLS.check_transport(endpoint, tls, Keyword.get(opts, :insecure, false))
    end
  end

  @doc false
  def child_spec(opts) do
    %{
      id: {__MODULE__, Keyword.fetch!(opts, :id)},
      start: {__MODULE__, :start_link, [opts]},
      restart: :transient,
      shutdown: 10_000
    }
  end

  @doc """
  Calls `tool` on the worker with `params` and waits for the result.

  The call runs from the caller's process over the NIF (the worker process
  is not in the path). Options as `Snakepit.GRPC.Client.execute_tool/4`:
  `:correlation_id` (generated when absent), `:timeout` (default 30000),
  `:session_id`, `:metadata`.

      Snakepit.GRPCWorker.execute(worker, "telemetry_demo", %{operation: "test", delay_ms: 100})
  """
  @spec execute(pid, String.t(), map | keyword, keyword) :: {:ok, term} | {:error, term}
  def execute(worker, tool, params \\ %{}, opts \\ []) do
    with {:ok, info} <- info(worker),
         {:ok, params} <- params(params),
         true <- Keyword.keyword?(opts) || {:error, {:invalid_options, opts}} do
      GenServer.cast(worker, :command)
      Client.execute_tool(info.channel, tool, params, Keyword.put(opts, :worker_id, info.id))
    end
  end

  defp params(params) when is_map(params), do: {:ok, params}

  defp params(params) when is_list(params) do
    if Keyword.keyword?(params),
      do: {:ok, Map.new(params)},
      else: {:error, {:invalid_params, "params must be a map or a keyword list"}}
  end

  defp params(_), do: {:error, {:invalid_params, "params must be a map or a keyword list"}}

  @doc """
  `{:ok, %{id, pool_name, endpoint, python_pid, channel}}` of a running
  worker; `{:error, :not_a_worker}` for anything that is not a live local
  `GRPCWorker` (checked before any message is sent, so no other process is
  ever called by mistake).
  """
  @spec info(pid) :: {:ok, map} | {:error, :not_a_worker | :worker_not_running}
  def info(worker) when is_pid(worker) do
    if worker?(worker) do
      try do
        GenServer.call(worker, {__MODULE__, :info})
      catch
        :exit, _ -> {:error, :worker_not_running}
      end
    else
      {:error, :not_a_worker}
    end
  end

  def info(_other), do: {:error, :not_a_worker}

  # Workers register under {:worker, id} in Snakepit.Registry.
  defp worker?(pid) do
    node(pid) == node() and
      Enum.any?(Registry.keys(Snakepit.Registry, pid), &match?({:worker, _}, &1))
  end

  ## Server

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)
    id = Keyword.fetch!(opts, :id)
    pool = Keyword.get(opts, :pool_name, :default)

    case Registry.register(Snakepit.Registry, {:worker, id}, pool) do
      {:ok, _} ->
        # Started by a pool (:notify): start_link returns at once and the
        # pool hears {:snakepit_worker_ready, pid, id} (or the exit), so a
        # slow Python start never blocks it.
        if is_pid(opts[:notify]),
          do: {:ok, %{starting: id}, {:continue, {:start, id, pool, opts}}},
          else: start(id, pool, opts)

      {:error, {:already_registered, _}} ->
        {:stop, {:duplicate_worker_id, id}}
    end
  end

  defp start(id, pool, opts) do
    started = if opts[:endpoint], do: attach(id, pool, opts), else: start_python(id, pool, opts)

    # A start that failed frees its id at once: the Registry would only
    # notice the exit later, and a start retried at once (a pool's restart,
    # a caller's retry) would be refused as a duplicate meanwhile.
    with {:stop, _} <- started, do: Registry.unregister(Snakepit.Registry, {:worker, id})
    started
  end

  @impl true
  def handle_continue({:start, id, pool, opts}, placeholder) do
    case start(id, pool, opts) do
      {:ok, state} ->
        send(opts[:notify], {:snakepit_worker_ready, self(), id})
        {:noreply, state}

      {:stop, reason} ->
        # Already reported (one error entry, spawn_failed): a {:shutdown, _}
        # exit adds no crash report. The pool unwraps it.
        {:stop, {:shutdown, reason}, placeholder}
    end
  end

  # A worker that runs already (validate/1 checked every option).
  defp attach(id, pool, opts) do
    {:ok, token} = Auth.token(opts[:token])
    {:ok, tls} = TLS.options(opts[:tls])

    state = %{
      id: id,
      pool_name: pool,
      port: nil,
      os_pid: nil,
      token: token,
      tls: tls,
      insecure: Keyword.get(opts, :insecure, false),
      opts: opts,
      started: System.monotonic_time(),
      endpoint: opts[:endpoint],
      channel: nil,
      commands: 0,
      stream_monitor: nil,
      ctx: %{worker_id: id, pool_name: pool},
      ingest: nil
    }

    {:ok, ready(register_stream(state), %{mode: :attached})}
  end

  defp start_python(id, pool, opts) do
    started = System.monotonic_time()
    exe = Keyword.get_lazy(opts, :python, &Snakepit.Python.executable/0)
    script = Path.join(Snakepit.Python.package_dir(), "grpc_server.py")

    demo? =
      Keyword.get(opts, :demo_tools, Application.get_env(:snakepit_telemetry, :demo_tools, false))

    demo = if demo?, do: ["--demo-tools"], else: []
    auth = ["--auth-token-stdin"]

    delay =
      case opts[:max_delay_ms] do
        nil -> []
        ms -> ["--max-delay-ms", to_string(ms)]
      end

    args = [
      script,
      "--port",
      "0",
      "--worker-id",
      id | auth ++ demo ++ delay ++ Keyword.get(opts, :args, [])
    ]

    token = Auth.new_token()

    spawn_event(:spawn_started, %{system_time: System.system_time()}, id, pool, %{
      worker_module: __MODULE__
    })

    # The token is the first line of its stdin; the rest of stdin only
    # signals our end.
    env = Snakepit.Python.env(Keyword.get(opts, :env, []), Keyword.get(opts, :python_path, []))

    spawned =
      with {:ok, path} <- Snakepit.Python.find(exe) do
        OSProcess.start(path, args,
          env: env,
          max_line: @max_line,
          stdin: [Auth.reveal(token), ?\n]
        )
      end

    case spawned do
      {:ok, proc} -> await_python(proc, exe, id, pool, token, started, opts)
      {:error, reason} -> spawn_failed(reason, {id, pool, opts}, started)
    end
  end

  defp await_python(proc, exe, id, pool, token, started, opts) do
    os_pid = proc.os_pid
    ctx = %{worker_id: id, pool_name: pool, python_pid: os_pid}

    state = %{
      id: id,
      pool_name: pool,
      port: proc.port,
      proc: proc,
      os_pid: os_pid,
      token: token,
      tls: nil,
      insecure: false,
      opts: opts,
      started: started,
      endpoint: nil,
      channel: nil,
      commands: 0,
      stream_monitor: nil,
      ctx: ctx,
      # Its output lines are parsed off the schedulers (StderrIngest).
      ingest: StderrIngest.start(ctx)
    }

    case await_ready(state, Keyword.get(opts, :ready_timeout, 15_000)) do
      {:ok, python_port, proc} ->
        {:ok, connect(%{state | proc: proc}, python_port)}

      {:error, reason, output} ->
        spawn_failed(reason, {id, pool, opts}, started, failure_text(reason, id, exe, output))
    end
  end

  # The worker never became ready: one error entry that says what to do,
  # and the catalog's spawn_failed event.
  defp spawn_failed(reason, {id, pool, opts}, started, text \\ nil) do
    retry = Keyword.get(opts, :restart_count, 0)
    Logger.error(text || spawn_failure_text(reason), worker_id: id)
    duration = System.monotonic_time() - started

    spawn_event(:spawn_failed, %{duration: duration}, id, pool, %{
      reason: reason,
      retry_count: retry
    })

    {:stop, reason}
  end

  defp spawn_failure_text({:python_not_found, exe}),
    do:
      "Python interpreter not found: #{inspect(exe)}. To fix: run `mix snakepit.setup` " <>
        "(it creates the application's Python environment), or set config " <>
        ":snakepit_telemetry, python_executable: \"/path/to/python\" or the worker's :python " <>
        "option (see Snakepit.Python)"

  defp spawn_failure_text({:spawn_failed, exe, reason}),
    do:
      "cannot start the Python interpreter #{inspect(exe)} (#{inspect(reason)}); set " <>
        "config :snakepit_telemetry, python_executable: \"/path/to/python\" or the worker's " <>
        ":python option (see Snakepit.Python)"

  defp spawn_failure_text(other), do: "the Python worker did not start: #{inspect(other)}"

  defp failure_text(reason, id, exe, output) do
    what =
      case reason do
        {:python_exited_before_ready, status} ->
          "exited with status #{status} before it was ready"

        {:python_not_ready, why} ->
          "did not become ready (#{why})"

        other ->
          "did not start (#{inspect(other)})"
      end

    Enum.join(
      [
        "the Python worker #{inspect(id)} (interpreter #{exe}) #{what}. Its last output:",
        StartupOutput.quoted(output),
        StartupOutput.advice(output)
      ],
      "\n"
    )
  end

  defp spawn_event(name, measurements, id, pool, extra) do
    :telemetry.execute(
      Naming.worker_event(name),
      measurements,
      Map.merge(%{node: node(), pool_name: pool, worker_id: id}, extra)
    )
  end

  # Output lines before the ready line are held (StartupOutput): quoted in
  # the error if the worker fails, logged as usual once it is ready.
  defp await_ready(s, timeout) do
    add = &StartupOutput.add(&2, &1, s.ingest)

    case OSProcess.await_line(s.proc, @ready, timeout, StartupOutput.new(), add) do
      {:ok, json, proc, output} ->
        StartupOutput.release(output, s.ingest)

        case Regex.run(~r/"port":\s*(\d+)/, json) do
          [_, p] -> {:ok, String.to_integer(p), proc}
          _ -> {:error, {:bad_ready_line, json}, output}
        end

      {:exit, status, _proc, output} ->
        # Its telemetry lines are delivered before init fails.
        StderrIngest.drain(s.ingest, 2_000)
        {:error, {:python_exited_before_ready, status}, output}

      {:timeout, proc, output} ->
        OSProcess.signal(proc.os_pid, "KILL")
        why = "no #{String.trim(@ready)} line within #{timeout} ms"
        {:error, {:python_not_ready, why}, output}
    end
  end

  defp connect(state, python_port) do
    endpoint = "127.0.0.1:#{python_port}"
    ctx = Map.put(state.ctx, :python_port, python_port)
    ingest = StderrIngest.put_context(state.ingest, ctx)
    state = register_stream(%{state | endpoint: endpoint, ctx: ctx, ingest: ingest})
    ready(state, %{python_port: python_port, mode: :grpc})
  end

  defp ready(state, meta) do
    {:ok, channel} =
      Client.connect(state.endpoint, token: state.token, tls: state.tls, insecure: state.insecure)

    :telemetry.execute(
      Naming.worker_event(:spawned),
      %{duration: System.monotonic_time() - state.started, system_time: System.system_time()},
      Map.merge(
        %{node: node(), pool_name: state.pool_name, worker_id: state.id, worker_pid: self()},
        meta
      )
    )

    %{state | channel: channel}
  end

  # GrpcStream drops its registrations when it restarts: watch it and
  # register again, so a worker never silently loses its telemetry.
  defp register_stream(state) do
    case Process.whereis(GrpcStream) do
      nil ->
        Process.send_after(self(), :register_stream, 50)
        state

      pid ->
        if s_monitor = state.stream_monitor, do: Process.demonitor(s_monitor, [:flush])
        state = %{state | stream_monitor: Process.monitor(pid)}

        stream_opts =
          @stream_defaults
          |> Keyword.merge(Keyword.get(state.opts, :stream, []))
          |> Keyword.put(:owner, self())
          |> Keyword.put(:token, state.token)
          |> Keyword.put(:tls, state.tls)
          |> Keyword.put(:insecure, state.insecure)

        case GrpcStream.register_worker(state.endpoint, state.ctx, stream_opts) do
          {:ok, _} ->
            state

          {:error, reason} ->
            Logger.error("telemetry stream not registered: #{inspect(reason)}; retrying",
              worker_id: state.id
            )

            Process.send_after(self(), :register_stream, 1_000)
            state
        end
    end
  end

  @impl true
  def handle_call({__MODULE__, :info}, _from, s) do
    {:reply,
     {:ok,
      %{
        id: s.id,
        pool_name: s.pool_name,
        endpoint: s.endpoint,
        python_pid: s.os_pid,
        channel: s.channel
      }}, s}
  end

  def handle_call(request, _from, s), do: Stray.call(__MODULE__, request, s)

  @impl true
  def handle_cast(:command, s), do: {:noreply, %{s | commands: s.commands + 1}}
  def handle_cast(message, s), do: Stray.cast(__MODULE__, message, s)

  @impl true
  def handle_info({port, {:data, data}}, %{port: port} = s),
    do: {:noreply, %{s | proc: StderrIngest.push_output(s.ingest, s.proc, data)}}

  def handle_info({port, {:exit_status, status}}, %{port: port} = s) do
    StderrIngest.drain(s.ingest, 2_000)
    Logger.warning("python worker exited with status #{status}", worker_id: s.id)
    {:stop, {:python_exited, status}, %{s | port: nil}}
  end

  # The parent's exit is handled by GenServer itself; the port's is the
  # only other link. Any other {:EXIT, ...} is a stray message.
  def handle_info({:EXIT, port, reason}, %{port: port} = s) when is_port(port),
    do: {:stop, reason, s}

  def handle_info({:DOWN, ref, :process, _, _}, %{stream_monitor: ref} = s) do
    Process.send_after(self(), :register_stream, 50)
    {:noreply, %{s | stream_monitor: nil}}
  end

  def handle_info(:register_stream, s), do: {:noreply, register_stream(s)}

  def handle_info(message, %{ingest: nil} = s), do: Stray.info(__MODULE__, message, s)

  def handle_info(message, s) do
    StderrIngest.handle_or_ignore(message, s.ingest, __MODULE__)
    {:noreply, s}
  end

  @impl true
  def terminate(_reason, %{starting: _}), do: :ok

  def terminate(reason, s) do
    GrpcStream.unregister_worker(s.id)
    stop_python(s)

    :telemetry.execute(
      Naming.worker_event(:terminated),
      %{lifetime: System.monotonic_time() - s.started, total_commands: s.commands},
      %{
        node: node(),
        pool_name: s.pool_name,
        worker_id: s.id,
        worker_pid: self(),
        reason: reason,
        planned: reason in [:normal, :shutdown] or match?({:shutdown, _}, reason)
      }
    )
  end

  # SIGTERM lets the worker shut down gracefully; SIGKILL if it lingers.
  defp stop_python(%{port: nil}), do: :ok
  defp stop_python(s), do: OSProcess.stop(s.proc, Keyword.get(s.opts, :shutdown_grace, 2_000))
end
