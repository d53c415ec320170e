# Soak: `make soak` (or `mix run bench/soak.exs`).
#
#   mix run bench/soak.exs [--workers 4] [--duration-s 60] [--seed N] [--hostile]
#
# --hostile adds hostile gRPC peers beside the workers (extreme numbers and
# totals, garbage, 200,000 keys, 10 MB frames, streams ended at once, idle
# streams; bench/support/soak_hostile.ex) and a loop of stray messages and
# bad calls; the run then also fails if GrpcStream ever restarted.
#
# N real Python workers, each registered once with GrpcStream, under mixed
# load for the duration: tool calls at full speed (queue_full drops), at
# steady rates and with random names (rejections); random sampling, filter
# and toggle changes; every few seconds a worker is killed (-9) and started
# again on its port, and now and then a handler raises. At the end the load
# stops, the streams settle and one line per worker shows where every event
# the workers reported went ("kills" include the one of the warm-up). Exits 1
# if any event is unaccounted, if the counting handler disagrees with the
# streams, or if atoms grew (see `atom_allowance` below). The seed (printed)
# repeats the random choices; timings still differ. Workers are killed at the
# end, also after a failure (and exit by themselves if the BEAM dies).

# The hostile peers' launcher is the tests' (it calls ExUnit only from start!/2).
Code.require_file("../test/support/hostile_worker.ex", __DIR__)

for file <- ~w(external soak_workers soak_load soak_hostile),
    do: Code.require_file("support/#{file}.ex", __DIR__)

alias Snakepit.GRPC.Client
alias Snakepit.Telemetry.GrpcStream
alias SnakepitBench.{SoakHostile, SoakLoad, SoakWorkers}

{opts, _} =
  OptionParser.parse!(System.argv(),
    strict: [workers: :integer, duration_s: :integer, seed: :integer, hostile: :boolean]
  )

n = opts[:workers] || 4
duration_s = opts[:duration_s] || 60
if n < 1 or duration_s < 1, do: Mix.raise("--workers and --duration-s must be at least 1")
seed = opts[:seed] || :rand.uniform(1_000_000)
:rand.seed(:exsss, seed)

# Atoms the run may add after the warm-up, which has already loaded every
# module the run uses (every tool, control, a kill and restart, a handler
# failure). A leak would be per event or per key: the random-name load alone
# sends thousands of distinct names and keys, so even one atom per distinct
# rejected name would exceed this by far. The margin covers code loaded on
# a rare path (e.g. a restart retry's log line).
atom_allowance = 50

Logger.configure(level: :warning)
:logger.add_primary_filter(:soak_raiser, {&SoakLoad.quiet_raiser/2, nil})

hostile? = opts[:hostile] || false

command =
  "mix run bench/soak.exs --workers #{n} --duration-s #{duration_s} --seed #{seed}" <>
    if(hostile?, do: " --hostile", else: "")

IO.puts("soak: #{command}\n  (argv: #{inspect(System.argv())})")

IO.puts(
  "  worker: #{Snakepit.Python.executable()} #{SoakWorkers.script()} --port P " <>
    "--sample-interval-ms 0"
)

SoakWorkers.init()
ids = for i <- 1..n, do: "soak_#{i}"
s = SoakLoad.new(ids)
ports = SoakWorkers.free_ports(n)
endpoint = fn i -> "127.0.0.1:#{Enum.at(ports, i)}" end
mib = fn bytes -> "#{Float.round((bytes || 0) / 1_048_576, 1)} MiB" end

run = fn ->
  # A crashed loop then fails the run through Task.await_many (and cleanup runs).
  Process.flag(:trap_exit, true)
  atoms_boot = :erlang.system_info(:atom_count)

  for {p, i} <- Enum.with_index(ports) do
    :ok = SoakWorkers.start(i, p)

    {:ok, _} =
      GrpcStream.register_worker(endpoint.(i), %{worker_id: Enum.at(ids, i)},
        token: SnakepitBench.External.token(),
        backoff_initial_ms: 50,
        backoff_max_ms: 500
      )
  end

  SoakLoad.attach_counter(s)
  hostile_pids = if hostile?, do: SoakHostile.start_all(), else: []
  :persistent_term.put(:soak_hostile_pids, hostile_pids)
  grpc_stream = Process.whereis(GrpcStream)

  # Warm-up: every path once, so the atom baseline includes loaded code.
  for i <- 0..(n - 1) do
    {:ok, ch} = Client.connect(endpoint.(i), token: SnakepitBench.External.token())
    {:ok, _} = Client.execute_tool(ch, "emit_events", %{count: 100, interval_ms: 0.1})
    {:ok, _} = Client.execute_tool(ch, "emit_random", %{count: 200, seed: i})
    {:ok, _} = Client.execute_tool(ch, "telemetry_demo", %{operation: "warmup"})
    {:ok, _} = Client.execute_tool(ch, "telemetry_state", %{})
  end

  id = hd(ids)
  :ok = GrpcStream.update_sampling(id, 0.5, ["tool.*"])
  :ok = GrpcStream.update_filter(id, allow: ["tool.*"], deny: ["tool.execution.*"])
  :ok = GrpcStream.toggle(id, false)
  :ok = SoakLoad.restore(id)
  SoakLoad.attach_raiser(s, 1)
  SoakLoad.kill_and_restart(s, 0, 200)
  {:ok, ch} = Client.connect(endpoint.(0), token: SnakepitBench.External.token())
  {:ok, _} = Client.execute_tool(ch, "emit_events", %{count: 10}, timeout: 15_000)
  {true, _} = SoakLoad.settle(s, 15_000)

  # Memory first: the first :erlang.memory/1 call creates ~300 allocator atoms.
  mem_start = {:erlang.memory(:total), SoakWorkers.beam_rss()}
  atoms_start = :erlang.system_info(:atom_count)
  IO.puts("warm-up done (atoms #{atoms_boot} -> #{atoms_start}); load for #{duration_s} s ...")

  # The run: 2 load loops per worker, controls, faults.
  tasks =
    for(i <- 0..(n - 1), k <- 1..2, do: {:load, i, seed * 100 + i * 10 + k})
    |> Enum.concat([{:control, seed + 1}, {:fault, seed + 2}])
    |> Enum.concat(if hostile?, do: [{:stray, seed + 3}], else: [])
    |> Enum.map(fn
      {:stray, sd} ->
        Task.async(fn -> SoakHostile.stray_loop(fn -> SoakLoad.stopped?(s) end, sd) end)

      {:load, i, sd} ->
        Task.async(fn -> SoakLoad.load_loop(s, i, endpoint.(i), sd) end)

      {:control, sd} ->
        Task.async(fn -> SoakLoad.control_loop(s, sd) end)

      {:fault, sd} ->
        Task.async(fn -> SoakLoad.fault_loop(s, sd) end)
    end)

  Process.sleep(duration_s * 1_000)
  SoakLoad.stop(s)
  Task.await_many(tasks, 60_000)
  Enum.each(ids, &(:ok = SoakLoad.restore(&1)))
  {settled?, rows} = SoakLoad.settle(s, 15_000)
  atoms_end = :erlang.system_info(:atom_count)
  mem_end = {:erlang.memory(:total), SoakWorkers.beam_rss()}
  new_atoms = SoakLoad.atoms_since(atoms_start)

  # The table.
  cols = ~w(worker sent delivered handler queue_full sampled_out filtered_out disabled rejected
           lost_conn unaccounted reconnects kills)

  line = fn cells ->
    cells |> Enum.map(&String.pad_leading(to_string(&1), 11)) |> Enum.join(" ")
  end

  body =
    for {{wid, st, handled}, i} <- Enum.with_index(rows) do
      [wid, st.python_emitted, st.events_delivered, handled] ++
        Enum.map(SoakLoad.drop_reasons(), &SoakLoad.dropped(st, &1)) ++
        [SoakLoad.unaccounted(st), st.reconnects, SoakLoad.count(s, {i, :kills})]
    end

  total = ["total" | body |> Enum.map(&tl/1) |> Enum.zip_with(&Enum.sum/1)]

  IO.puts("\n" <> line.(cols))
  Enum.each(body ++ [total], &IO.puts(line.(&1)))

  calls = fn f -> Enum.sum(for i <- 0..(n - 1), do: SoakLoad.count(s, {i, f})) end

  IO.puts("""

  tool calls: #{calls.(:calls_ok)} ok, #{calls.(:calls_failed)} failed (killed workers); \
  controls: #{calls.(:controls)} (#{SoakLoad.count(s, :control_errors)} errors); \
  raising handler failed #{SoakLoad.count(s, :raised)} times
  atoms: #{atoms_start} after warm-up -> #{atoms_end} at the end \
  (+#{atoms_end - atoms_start}, allowance #{atom_allowance})
  memory: total #{mib.(elem(mem_start, 0))} -> #{mib.(elem(mem_end, 0))}, \
  BEAM RSS #{mib.(elem(mem_start, 1))} -> #{mib.(elem(mem_end, 1))}
  #{command}
  """)

  if hostile?, do: IO.puts(Enum.join(["hostile peers:" | SoakHostile.report()], "\n") <> "\n")

  if new_atoms != [],
    do: IO.puts("new atoms: #{inspect(Enum.take(new_atoms, 400), limit: :infinity)}\n")

  [
    {not settled?, "streams did not settle within 15 s"},
    {Enum.any?(body, &(Enum.at(&1, 10) != 0)), "events unaccounted (see the table)"},
    {Enum.any?(body, &(Enum.at(&1, 2) != Enum.at(&1, 3))), "handler count != events_delivered"},
    {SoakLoad.count(s, :unknown_worker) != 0, "events with an unknown worker_id"},
    {not SoakLoad.counter_attached?(), "the counting handler was detached"},
    {atoms_end - atoms_start > atom_allowance, "atom count grew by #{atoms_end - atoms_start}"},
    {SoakLoad.count(s, :control_errors) != 0, "control calls failed"},
    {SoakLoad.count(s, :restart_failures) != 0, "a worker did not restart"},
    {Process.whereis(GrpcStream) != grpc_stream, "GrpcStream restarted during the run"}
  ]
  |> Enum.filter(&elem(&1, 0))
  |> Enum.map(&elem(&1, 1))
end

failures =
  try do
    run.()
  rescue
    e -> ["crashed: " <> Exception.format(:error, e, __STACKTRACE__)]
  catch
    kind, reason -> ["crashed: " <> Exception.format(kind, reason, __STACKTRACE__)]
  after
    SoakWorkers.kill_all()
    SoakHostile.kill_all(:persistent_term.get(:soak_hostile_pids, []))
  end

case failures do
  [] ->
    IO.puts("soak: PASS")
    System.halt(0)

  _ ->
    Enum.each(failures, &IO.puts("soak: FAIL: #{&1}"))
    System.halt(1)
end
