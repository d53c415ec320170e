defmodule Snakepit.Python do
  @moduledoc """
  Where the Python side lives: the interpreter to run workers with and the
  folder of the `snakepit_bridge` package.

  ## The interpreter

  The first of these that applies (logged once at start, at info):

    1. `config :snakepit_telemetry, python_executable: "/opt/venv/bin/python"`
       (a path, or a name looked up on `PATH`);
    2. the application's environment, created by `mix snakepit.setup`:
       `bin/python` in `config :snakepit_telemetry, python_env: "path"`,
       by default `.venv` in the current folder (the application's, under
       `mix`);
    3. the library's own `.venv` (created by `make setup` when developing
       this library);
    4. `python3` on `PATH`.

  A worker's `:python` option overrides all of them. `mix snakepit.doctor`
  checks the interpreter chosen.
  """

  require Logger

  @typedoc "Where the interpreter came from."
  @type source :: :config | :app_env | :library_env | :path

  @doc "The Python interpreter to start workers with."
  @spec executable() :: String.t()
  def executable, do: elem(resolve(), 0)

  @doc "The interpreter and where it came from (see the module documentation)."
  @spec resolve() :: {String.t(), source}
  def resolve do
    app = Path.join(env_dir(), "bin/python")
    library = Path.join(project_root(), ".venv/bin/python")

    cond do
      exe = Application.get_env(:snakepit_telemetry, :python_executable) -> {exe, :config}
      File.exists?(app) -> {app, if(app == library, do: :library_env, else: :app_env)}
      File.exists?(library) -> {library, :library_env}
      exe = System.find_executable("python3") -> {exe, :path}
      true -> {"python3", :path}
    end
  end

  @doc """
  The folder of the application's environment (`mix snakepit.setup` creates
  it): `config :snakepit_telemetry, :python_env`, else `.venv`, relative to
  the current folder.
  """
  @spec env_dir() :: Path.t()
  def env_dir, do: Path.expand(Application.get_env(:snakepit_telemetry, :python_env, ".venv"))

  @doc "The library's `requirements.txt` (what a worker needs installed)."
  @spec requirements_file() :: Path.t()
  def requirements_file, do: Path.join(package_dir(), "requirements.txt")

  @doc false
  # Once, at application start.
  def log_choice do
    {exe, source} = resolve()

    from =
      case source do
        :config -> "config :snakepit_telemetry, :python_executable"
        :app_env -> "the application's environment, made by mix snakepit.setup"
        :library_env -> "the library's own .venv"
        :path -> "python3 on PATH; run `mix snakepit.setup` to give the application its own"
      end

    Logger.info("Snakepit workers run Python #{exe} (from #{from})")
  end

  @doc "The folder to put on `PYTHONPATH` (holds `snakepit_bridge`)."
  @spec package_dir() :: String.t()
  def package_dir, do: Path.join(priv_dir(), "python")

  @doc """
  Environment for a Python worker process: `PYTHONPATH` (the folders of
  `python_path`, then the library's package folder, then a `PYTHONPATH`
  given in `extra`), unbuffered output, and the rest of `extra`.
  """
  @spec env(keyword | [{String.t(), String.t()}], [Path.t()]) :: [{String.t(), String.t()}]
  def env(extra \\ [], python_path \\ []) do
    extra = Enum.map(extra, fn {k, v} -> {to_string(k), to_string(v)} end)
    {given, extra} = Enum.split_with(extra, &match?({"PYTHONPATH", _}, &1))

    folders =
      Enum.map(python_path, &Path.expand/1) ++ [package_dir() | Enum.map(given, &elem(&1, 1))]

    [{"PYTHONPATH", Enum.join(folders, ":")}, {"PYTHONUNBUFFERED", "1"} | extra]
  end

  @doc "True for a list of folder names (`:python_path`)."
  @spec path_list?(term) :: boolean
  def path_list?(list), do: Snakepit.Args.list_of?(list, &path?/1)

  defp path?(p),
    do: is_binary(p) and p != "" and String.valid?(p) and not String.contains?(p, [<<0>>, ":"])

  @doc """
  `{:ok, path}` of an interpreter given as a path or a name on `PATH`;
  `{:error, {:python_not_found, python}}` when there is none.
  """
  @spec find(String.t()) :: {:ok, String.t()} | {:error, {:python_not_found, String.t()}}
  def find(python) when is_binary(python) do
    found =
      if String.contains?(python, "/"),
        do: File.regular?(python) && python,
        else: System.find_executable(python)

    if found, do: {:ok, found}, else: {:error, {:python_not_found, python}}
  end

  defp priv_dir do
    case :code.priv_dir(:snakepit_telemetry) do
      {:error, _} -> Path.join(project_root(), "priv")
      dir -> to_string(dir)
    end
  end

  # priv/ is a symlink into the source tree, so its parent is the project.
  defp project_root, do: Path.expand("../..", __DIR__)
end
