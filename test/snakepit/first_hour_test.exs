defmodule Snakepit.FirstHourTest do
  # The library as a new user meets it: a fresh `mix new` project with this
  # library as a path dependency, its Python environment made by
  # `mix snakepit.setup` (a real virtualenv, pip from the package index), a
  # pool with the application's own tool module on :python_path, a tool call
  # and its events in a handler. Slow (a project compile and a pip install).
  use ExUnit.Case, async: false

  @moduletag :tmp_dir
  @moduletag timeout: 600_000

  @library Path.expand("../..", __DIR__)

  @tools ~S"""
  import sys

  from snakepit_bridge import telemetry
  from snakepit_bridge.tools import tool


  @tool("predict")
  def predict(params, ctx):
      telemetry.emit("tool.result_size", {"bytes": 3}, {"tool": "predict"})
      return {"label": "cat", "python": sys.executable, "x": params["x"]}
  """

  @script ~S"""
  :telemetry.attach_many(
    "first-hour",
    [[:snakepit, :python, :tool, :execution, :stop], [:snakepit, :python, :tool, :result_size]],
    fn event, _m, md, pid -> send(pid, {:event, event, md}) end,
    self()
  )

  {:ok, _} =
    Snakepit.Pool.start_link(
      name: :app_pool,
      size: 1,
      adapter_module: "my_app.tools",
      python_path: [Path.expand("priv/python")],
      status_interval: nil
    )

  {:ok, result} = Snakepit.Pool.execute(:app_pool, "predict", %{x: 2}, correlation_id: "first-hour")
  IO.puts("RESULT " <> inspect(result))

  for _ <- 1..2 do
    receive do
      {:event, event, md} -> IO.puts("EVENT #{inspect(event)} #{md.correlation_id}")
    after
      10_000 -> raise "no event"
    end
  end
  """

  @missing ~S"""
  Application.put_env(:snakepit_telemetry, :python_executable, System.fetch_env!("BARE_PYTHON"))
  Process.flag(:trap_exit, true)
  IO.puts("START " <> inspect(Snakepit.Pool.start_link(name: :bare_pool, size: 1, status_interval: nil)))
  """

  defp mix(dir, args, env \\ []) do
    env = [{"MIX_ENV", "dev"}, {"MIX_EXS", nil}, {"MIX_BUILD_PATH", nil} | env]
    System.cmd("mix", args, cd: dir, env: env, stderr_to_stdout: true)
  end

  test "a new project: setup task, its own tool module, a call and its events", %{tmp_dir: tmp} do
    {_, 0} = mix(tmp, ["new", "my_app", "--sup"])
    app = Path.join(tmp, "my_app")

    mix_exs = Path.join(app, "mix.exs")
    dep = ~s({:snakepit_telemetry, path: #{inspect(@library)}})

    File.write!(
      mix_exs,
      String.replace(File.read!(mix_exs), "[\n      #", "[\n      #{dep}\n      #")
    )

    File.mkdir_p!(Path.join(app, "priv/python/my_app"))
    File.write!(Path.join(app, "priv/python/my_app/__init__.py"), "")
    File.write!(Path.join(app, "priv/python/my_app/tools.py"), @tools)
    File.write!(Path.join(app, "check.exs"), @script)
    File.write!(Path.join(app, "missing.exs"), @missing)

    {setup, status} = mix(app, ["snakepit.setup"])
    assert status == 0, setup
    venv_python = Path.join(app, ".venv/bin/python")
    assert setup =~ "Python environment ready: #{venv_python}"

    # Safe to re-run: the environment is kept.
    {again, 0} = mix(app, ["snakepit.setup"])
    assert again =~ "Using the existing environment"

    {run, status} = mix(app, ["run", "check.exs"])
    assert status == 0, run
    assert run =~ "Snakepit workers run Python #{venv_python} (from the application's environment"
    assert run =~ ~s("python" => #{inspect(venv_python)})
    assert run =~ ~s("label" => "cat")
    assert run =~ "EVENT [:snakepit, :python, :tool, :execution, :stop] first-hour"
    assert run =~ "EVENT [:snakepit, :python, :tool, :result_size] first-hour"

    # An interpreter without grpcio: the error names the module and the fix.
    bare = Path.join(tmp, "bare")
    {_, 0} = System.cmd("python3", ["-m", "venv", "--without-pip", bare])

    {missing, 0} =
      mix(app, ["run", "missing.exs"], [{"BARE_PYTHON", Path.join(bare, "bin/python")}])

    assert missing =~ "START {:error,"
    assert missing =~ "No module named 'grpc'" and missing =~ "grpcio"
    assert missing =~ "mix snakepit.setup"

    {bad, 1} = mix(app, ["snakepit.doctor", "--python", Path.join(bare, "bin/python")])
    assert bad =~ "FAIL  package grpcio: not installed"
    {good, 0} = mix(app, ["snakepit.doctor"])
    assert good =~ "ok    snakepit_bridge"

    # For the record (the closing note quotes it).
    File.write!(
      Path.join(@library, "_build/first_hour_transcript.txt"),
      Enum.map([setup, again, run, missing, bad, good], &[&1, "\n----\n"])
    )
  end
end
