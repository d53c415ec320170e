defmodule Snakepit.Security.AuthTest do
  # Issue 12, items 1 and 2: only the BEAM that started a worker may talk to
  # it. Every RPC without the worker's token is refused; an intruder's
  # stream receives nothing and changes nothing Elixir receives; the token
  # shows up on no command line, in no environment and in no inspect output.
  use ExUnit.Case, async: false

  import Snakepit.Test.Eventually

  alias Snakepit.{Auth, GRPCWorker}
  alias Snakepit.GRPC.Client
  alias Snakepit.Telemetry.GrpcStream

  @result_size [:snakepit, :python, :tool, :result_size]

  setup do
    worker = start_supervised!({GRPCWorker, id: "auth_w", args: ["--sample-interval-ms", "0"]})

    {:ok, info} = GRPCWorker.info(worker)
    eventually(fn -> match?({:ok, %{state: :open}}, GrpcStream.stats("auth_w")) end)
    %{worker: worker, info: info}
  end

  test "tool calls and Ping without the token, or with a wrong one, are UNAUTHENTICATED",
       %{info: info} do
    wrong = Auth.new_token()

    for opts <- [[], [token: wrong]] do
      {:ok, channel} = Client.connect(info.endpoint, opts)

      assert {:error, {:grpc_error, "Unauthenticated", _}} =
               Client.execute_tool(channel, "ping", %{})

      assert {:error, {:grpc_error, "Unauthenticated", _}} = Client.ping(channel)
    end

    # The worker's own channel carries the token.
    assert {:ok, %{message: "pong: ping", round_trip_us: us}} = Client.ping(info.channel)
    assert is_integer(us)
    assert {:ok, %{"pong" => true}} = Client.execute_tool(info.channel, "ping", %{})
  end

  test "an intruder's telemetry streams (both RPCs) get nothing and change nothing",
       %{worker: worker, info: info} do
    test = self()
    handler = "auth-#{System.unique_integer()}"

    :telemetry.attach(handler, @result_size, &__MODULE__.forward/4, test)

    on_exit(fn -> :telemetry.detach(handler) end)

    intruders = for rpc <- [:batched, :stock], do: {"intruder_#{rpc}", rpc}
    on_exit(fn -> Enum.each(intruders, fn {id, _} -> GrpcStream.unregister_worker(id) end) end)

    for {id, rpc} <- intruders do
      {:ok, _} =
        GrpcStream.register_worker(info.endpoint, %{worker_id: id}, rpc: rpc, backoff_max_ms: 200)

      # What an intruder would send first: silence everything.
      :ok = GrpcStream.update_sampling(id, 0.0)
      :ok = GrpcStream.update_filter(id, deny: ["*"])
      :ok = GrpcStream.toggle(id, false)
    end

    eventually(fn ->
      Enum.all?(intruders, fn {id, _} ->
        {:ok, s} = GrpcStream.stats(id)
        (s.last_error || "") =~ "Unauthenticated"
      end)
    end)

    {:ok, _} = GRPCWorker.execute(worker, "emit_events", %{count: 50})
    for _ <- 1..51, do: assert_receive({:event, "auth_w"}, 5_000)
    refute_receive {:event, _}, 300

    for {id, _} <- intruders do
      {:ok, s} = GrpcStream.stats(id)
      assert s.events_delivered == 0 and s.connects == 0
    end

    {:ok, ours} = GrpcStream.stats("auth_w")
    assert ours.reconnects == 0 and ours.state == :open
    assert ours.accounting.dropped.sampled_out == 0
    assert ours.accounting.dropped.filtered_out == 0
    assert ours.accounting.dropped.disabled == 0
    # The worker counted the refusals and told us.
    eventually(fn ->
      {:ok, _} = GRPCWorker.execute(worker, "emit_events", %{count: 1})
      {:ok, s} = GrpcStream.stats("auth_w")
      s.python_auth_rejected >= 2
    end)
  end

  def forward(_event, _measurements, meta, test), do: send(test, {:event, meta.worker_id})

  test "the token is on no command line, in no environment, in no inspect output",
       %{worker: worker, info: info} do
    %{token: token} = :sys.get_state(worker)
    secret = Auth.reveal(token)
    assert byte_size(secret) >= 22

    for file <- ["cmdline", "environ"] do
      refute File.read!("/proc/#{info.python_pid}/#{file}") =~ secret
    end

    refute inspect(:sys.get_state(worker)) =~ secret
    refute inspect(:sys.get_state(GrpcStream)) =~ secret
    refute inspect(:ets.tab2list(GrpcStream.Registry)) =~ secret
    assert inspect(token) == "#Snakepit.Auth.Token<redacted>"
  end

  test "bad tokens are refused without echoing them" do
    for bad <- ["short", String.duplicate("a", 513), "with space 0123456789abcdef", 42] do
      assert {:error, {:invalid_option, {:token, :redacted}}} = Auth.token(bad)

      assert {:error, {:invalid_option, {:token, :redacted}}} =
               GrpcStream.register_worker("127.0.0.1:1", %{worker_id: "t"}, token: bad)

      assert {:error, {:invalid_option, {:token, :redacted}}} =
               Client.connect("127.0.0.1:1", token: bad)
    end
  end
end
