defmodule Snakepit.Security.TLSTest do
  # Issue 12, item 5: a worker on another host (a network namespace joined
  # by a veth pair, made by the test) over TLS with client certificates.
  # Events and controls flow; a client with the wrong CA or without a client
  # certificate is refused; plain text to a non-loopback host needs
  # `insecure: true`.
  use ExUnit.Case, async: false

  import Snakepit.Test.Eventually

  alias Snakepit.{Auth, GRPCWorker}
  alias Snakepit.GRPC.Client
  alias Snakepit.Telemetry.GrpcStream
  alias Snakepit.Test.RemoteHost

  @moduletag :netns
  @result_size [:snakepit, :python, :tool, :result_size]

  setup_all do
    dir = Path.join(System.tmp_dir!(), "snakepit-tls-#{System.unique_integer([:positive])}")
    certs = RemoteHost.certificates!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)
    %{certs: certs}
  end

  setup %{certs: certs} do
    ns = RemoteHost.netns!()
    token = Auth.new_token()

    worker =
      RemoteHost.start_worker!(ns, token, [
        "--tls-cert",
        certs.server.pem,
        "--tls-key",
        certs.server.key,
        "--tls-client-ca",
        certs.ca.pem
      ])

    tls = [ca_file: certs.ca.pem, cert_file: certs.client.pem, key_file: certs.client.key]
    %{worker: worker, token: token, tls: tls}
  end

  def forward(_event, measurements, meta, test),
    do: send(test, {:event, meta.worker_id, measurements})

  test "events and controls flow over mutual TLS to an attached worker",
       %{worker: w, token: token, tls: tls} do
    handler = "tls-#{System.unique_integer()}"
    :telemetry.attach(handler, @result_size, &__MODULE__.forward/4, self())
    on_exit(fn -> :telemetry.detach(handler) end)

    pid =
      start_supervised!(
        {GRPCWorker, id: "remote_w", endpoint: w.endpoint, token: token, tls: tls}
      )

    eventually(fn -> match?({:ok, %{state: :open}}, GrpcStream.stats("remote_w")) end)

    {:ok, info} = GRPCWorker.info(pid)
    assert {:ok, %{message: "pong: ping"}} = Client.ping(info.channel)
    {:ok, _} = GRPCWorker.execute(pid, "emit_events", %{count: 20})
    for _ <- 1..21, do: assert_receive({:event, "remote_w", %{bytes: _}}, 5_000)

    # Controls reach the remote worker: off, nothing arrives; on again.
    :ok = GrpcStream.toggle("remote_w", false)

    eventually(fn ->
      match?({:ok, %{controls_sent: n}} when n >= 1, GrpcStream.stats("remote_w"))
    end)

    {:ok, _} = GRPCWorker.execute(pid, "emit_events", %{count: 5})
    refute_receive {:event, "remote_w", _}, 300

    eventually(fn ->
      {:ok, s} = GrpcStream.stats("remote_w")
      s.accounting.dropped.disabled >= 6
    end)

    :ok = GrpcStream.toggle("remote_w", true)

    eventually(fn ->
      match?({:ok, %{controls_sent: n}} when n >= 2, GrpcStream.stats("remote_w"))
    end)

    {:ok, _} = GRPCWorker.execute(pid, "emit_events", %{count: 1})
    assert_receive {:event, "remote_w", _}, 5_000
  end

  test "a client that trusts another CA is refused", %{
    worker: w,
    token: token,
    tls: tls,
    certs: certs
  } do
    wrong = Keyword.put(tls, :ca_file, certs.other_ca.pem)
    {:ok, channel} = Client.connect(w.endpoint, token: token, tls: wrong)
    assert {:error, {:grpc_error, "Unavailable", _}} = Client.ping(channel, timeout: 3_000)

    on_exit(fn -> GrpcStream.unregister_worker("wrong_ca") end)

    {:ok, _} =
      GrpcStream.register_worker(w.endpoint, %{worker_id: "wrong_ca"}, token: token, tls: wrong)

    eventually(fn ->
      {:ok, s} = GrpcStream.stats("wrong_ca")
      s.connects == 0 and is_binary(s.last_error) and s.last_error =~ "connect failed"
    end)
  end

  test "a client without a client certificate is refused", %{worker: w, token: token, tls: tls} do
    {:ok, channel} = Client.connect(w.endpoint, token: token, tls: Keyword.take(tls, [:ca_file]))
    assert {:error, {:grpc_error, _, _}} = Client.ping(channel, timeout: 3_000)

    # The same with the certificate works: the refusal was the missing certificate.
    {:ok, channel} = Client.connect(w.endpoint, token: token, tls: tls)
    assert {:ok, _} = Client.ping(channel)
  end

  test "plain text to the remote host needs insecure: true, and then gets nowhere",
       %{worker: w, token: token} do
    assert {:error, {:insecure_endpoint, _}} = Client.connect(w.endpoint, token: token)

    assert {:error, {:insecure_endpoint, _}} =
             GrpcStream.register_worker(w.endpoint, %{worker_id: "plain"}, token: token)

    assert {:error, {:insecure_endpoint, _}} =
             GRPCWorker.start_link(id: "plain", endpoint: w.endpoint, token: token)

    {:ok, channel} = Client.connect(w.endpoint, token: token, insecure: true)
    assert {:error, {:grpc_error, _, _}} = Client.ping(channel, timeout: 3_000)
  end
end
