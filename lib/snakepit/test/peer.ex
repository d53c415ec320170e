defmodule Snakepit.Test.Peer do
  @moduledoc """
  BEAM nodes on this machine running the library with a pool of real
  Python workers (OTP's `:peer`), for cluster tests and demos
  (`make demo-cluster`, `test/snakepit/cluster_test.exs`).

      :ok = Snakepit.Test.Peer.start_primary(:snakepit_demo)
      {peer, node} = Snakepit.Test.Peer.start(:node_b, :pool_b, cookie: :snakepit_demo)
      GrpcStream.list_streams(scope: :cluster)
      :peer.stop(peer)
  """

  @doc "Makes this VM a distributed node on loopback (epmd started if needed)."
  @spec start_primary(atom, atom) :: :ok
  def start_primary(cookie, name \\ :"primary_#{System.unique_integer([:positive])}") do
    unless Node.alive?() do
      System.cmd("epmd", ["-daemon"])
      {:ok, _} = Node.start(:"#{name}@127.0.0.1", :longnames)
    end

    Node.set_cookie(cookie)
    :ok
  end

  @doc """
  Starts a node `name`@127.0.0.1 with this VM's code paths, the library
  started and a pool `pool` of one worker (demo tools loaded). Options:
  `:cookie` (this node's by default), `:size` (1).
  """
  @spec start(atom, atom, keyword) :: {pid, node}
  def start(name, pool, opts \\ []) do
    cookie = Keyword.get(opts, :cookie, Node.get_cookie())
    paths = Enum.flat_map(:code.get_path(), &[~c"-pa", &1])

    {:ok, peer, node} =
      :peer.start_link(%{
        name: name,
        host: ~c"127.0.0.1",
        longnames: true,
        # Peers that come and go on one machine: global's partition guard
        # would disconnect the survivors from each other (OTP 25's default).
        args:
          paths ++
            [
              ~c"-setcookie",
              Atom.to_charlist(cookie),
              ~c"-kernel",
              ~c"prevent_overlapping_partitions",
              ~c"false"
            ]
      })

    pool_opts = [size: Keyword.get(opts, :size, 1), demo_tools: true, status_interval: nil]
    :ok = :erpc.call(node, __MODULE__, :boot, [pool, pool_opts, Snakepit.Python.executable()])
    {peer, node}
  end

  @doc false
  # Runs on the new node.
  def boot(pool, pool_opts, python) do
    {:ok, _} = Application.ensure_all_started(:logger)
    Logger.configure(level: :warning)
    Application.put_env(:snakepit_telemetry, :python_executable, python)
    Application.put_env(:snakepit_telemetry, :pools, [{pool, pool_opts}])
    {:ok, _} = Application.ensure_all_started(:snakepit_telemetry)
    :ok
  end
end
