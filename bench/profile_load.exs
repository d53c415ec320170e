# The steady load of bench/profile.sh: the loadgen at full speed into N
# streams with the counting handler (as case (a) of bench/run.exs). Prints
# `PROFILE_READY <beam os pid>` after the warm-up, measures `--seconds`, then
# `PROFILE_RESULT key=value ...` and stops.
#
#   mix run bench/profile_load.exs [--streams 16] [--rpc batched] [--seconds 5]
#       [--warmup-ms 2000] [--max-batch N] [--lg-batch N]

for file <- ~w(external probe report cases),
    do: Code.require_file("support/#{file}.ex", __DIR__)

alias Snakepit.Telemetry.{GrpcStream, Naming}
alias SnakepitBench.{External, Handlers, Probe}

{opts, _} =
  OptionParser.parse!(System.argv(),
    strict: [
      streams: :integer,
      rpc: :string,
      seconds: :integer,
      warmup_ms: :integer,
      max_batch: :integer,
      lg_batch: :integer
    ]
  )

n = opts[:streams] || 16
rpc = String.to_existing_atom(opts[:rpc] || "batched")
seconds = opts[:seconds] || 5
Logger.configure(level: :warning)
:erlang.system_flag(:scheduler_wall_time, true)

stock = if rpc == :stock, do: ["--stock-only"], else: []
lg = External.start_loadgen(["--rate", "0", "--batch", "#{opts[:lg_batch] || 256}"] ++ stock)
counter = :counters.new(1, [:write_concurrency])
:telemetry.attach_many("profile-load", Naming.python_events(), &Handlers.count/4, counter)
register_opts = [rpc: rpc] ++ if(opts[:max_batch], do: [max_batch: opts[:max_batch]], else: [])

ids = for i <- 1..n, do: "profile-#{i}"

for id <- ids,
    do: {:ok, _} = GrpcStream.register_worker(lg.endpoint, %{worker_id: id}, register_opts)

Process.sleep(opts[:warmup_ms] || 2_000)

IO.puts("PROFILE_READY #{System.pid()}")
IO.puts("PROFILE_COMMAND #{lg.command} ; #{n} x register_worker #{inspect(register_opts)}")
s0 = Probe.start(counter, %{loadgen: lg.os_pid})
Process.sleep(seconds * 1000)
w = Probe.window(s0, counter, %{loadgen: lg.os_pid})

us = fn cores ->
  if w.events > 0, do: Float.round((cores || 0) * w.seconds * 1.0e6 / w.events, 3)
end

IO.puts(
  "PROFILE_RESULT events_per_s=#{round(w.events_per_s)} " <>
    "ingest_cores=#{w.cpu_cores[:nif_ingest]} ingest_us_per_event=#{us.(w.cpu_cores[:nif_ingest])} " <>
    "loadgen_us_per_event=#{us.(w.cpu_cores[:loadgen])} " <>
    "sched_ns_per_event=#{round(w.sched_ns_per_event || 0)} " <>
    "dirty_ns_per_event=#{round(w.dirty_cpu_ns_per_event || 0)} other_cores=#{w.cpu_cores[:other]}"
)

:telemetry.detach("profile-load")
Enum.each(ids, &GrpcStream.unregister_worker/1)
External.stop(lg)
